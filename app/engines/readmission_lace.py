"""Readmission-risk engine: the LACE index at discharge, a published and validated predictive score.

LACE = Length of stay + Acuity of admission + Comorbidity (Charlson) + Emergency department visits
in the previous six months (van Walraven et al., CMAJ 2010). Every point is traced to the resource
it came from, and a score at or above the high-risk cut-off proposes a follow-up appointment
within seven days of discharge. The point tables and code lists are data
(``knowledge/readmission_lace.yaml``); this module only applies them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from app.engines.base import PatientData
from app.engines.fhir_json import ICD10CM, SNOMED, codings, parse_datetime, reference, status_code
from app.engines.lace_knowledge import CharlsonCategory, LaceKnowledge
from cds_hooks.advice import Advice, AdviceSet, CardSource, Evidence, ProposedAction, ProposedSuggestion

RULE_ID = "lace-high-risk"
CONFIDENCE = 0.9
PENALTY_UNKNOWN_ACUITY = 0.15
EMERGENCY_ADMIT_SOURCES = frozenset({"emd"})
EMERGENCY_PRIORITIES = frozenset({"EM", "emergency"})
FOLLOW_UP_DAYS = 7
NOT_COUNTED = frozenset({"entered-in-error", "refuted"})


@dataclass(frozen=True)
class LaceScore:
    """The four components, their points, and the resources each came from."""

    stay_days: int
    emergent: bool | None
    charlson: int
    ed_visits: int
    points: tuple[int, int, int, int]
    evidence: tuple[Evidence, ...]

    @property
    def total(self) -> int:
        return sum(self.points)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ReadmissionLaceEngine:
    def __init__(
        self, source: CardSource, knowledge: LaceKnowledge, clock: Callable[[], datetime] = _utc_now
    ) -> None:
        self.source = source
        self.knowledge = knowledge
        self.clock = clock

    def suggest(self, data: PatientData) -> AdviceSet:
        score = self.score(data)
        if score is None:
            return AdviceSet()
        used = tuple(sorted({item.reference for item in score.evidence}))
        if score.total < self.knowledge.high_risk_at:
            return AdviceSet((), used)
        return AdviceSet((self._advice(score, data),), used)

    def score(self, data: PatientData) -> LaceScore | None:
        """None when the encounter or its start is missing: no score is better than a guessed one."""
        encounter = data.encounter
        admitted = parse_datetime(((encounter or {}).get("period") or {}).get("start"))
        if encounter is None or admitted is None:
            return None
        discharged = parse_datetime((encounter.get("period") or {}).get("end")) or self.clock()
        stay_days = max(0, (discharged.date() - admitted.date()).days)
        emergent = _emergent(encounter)
        categories, condition_evidence = self._charlson(data.of_type("Condition"))
        charlson = sum(category.weight for category in categories)
        visits = self._ed_visits(data.of_type("Encounter"), encounter, admitted)
        knowledge = self.knowledge
        points = (
            knowledge.stay_points(stay_days),
            knowledge.acuity_points if emergent else 0,
            knowledge.capped(knowledge.comorbidity_points, charlson),
            knowledge.capped(knowledge.ed_visit_points, len(visits)),
        )
        acuity = {True: "emergent", False: "elective", None: "acuity not recorded"}[emergent]
        evidence = (
            Evidence(reference(encounter), f"stay of {stay_days} days, {acuity} admission"),
            *condition_evidence,
            *(Evidence(reference(v), f"emergency visit on {_start(v).date()}") for v in visits),
        )
        return LaceScore(stay_days, emergent, charlson, len(visits), points, evidence)

    def _charlson(self, conditions: list[dict]) -> tuple[list[CharlsonCategory], list[Evidence]]:
        present: dict[str, tuple[CharlsonCategory, str]] = {}
        for condition in conditions:
            if status_code(condition.get("verificationStatus")) in NOT_COUNTED:
                continue
            for category in self.knowledge.charlson:
                if category.id not in present and _is_in(category, condition):
                    present[category.id] = (category, reference(condition))
        replaced = {name for category, _ in present.values() for name in category.replaces}
        kept = [(category, ref) for name, (category, ref) in present.items() if name not in replaced]
        evidence = [
            Evidence(ref, f"{category.id.replace('-', ' ')} (Charlson {category.weight})")
            for category, ref in kept
        ]
        return [category for category, _ in kept], evidence

    def _ed_visits(self, encounters: list[dict], index: dict, admitted: datetime) -> list[dict]:
        """Emergency visits in the look-back window, except the admission's own ED stay."""
        earliest = admitted - timedelta(days=self.knowledge.ed_lookback_days)
        latest = admitted - timedelta(hours=self.knowledge.index_ed_window_hours)
        return [
            e
            for e in encounters
            if e.get("id") != index.get("id")
            and (e.get("class") or {}).get("code") == "EMER"
            and e.get("status") not in ("entered-in-error", "cancelled")
            and (start := _start(e)) is not None
            and earliest <= start < latest
        ]

    def _advice(self, score: LaceScore, data: PatientData) -> Advice:
        length, acuity, comorbidity, emergency = score.points
        confidence = CONFIDENCE - (PENALTY_UNKNOWN_ACUITY if score.emergent is None else 0)
        return Advice(
            summary=f"High risk of readmission: LACE index {score.total}",
            indicator="warning",
            rationale=(
                f"LACE index {score.total}: length of stay {score.stay_days} days ({length} points), "
                f"acuity {acuity} points, Charlson index {score.charlson} ({comorbidity} points), "
                f"{score.ed_visits} emergency visits in the previous 6 months ({emergency} points). "
                f"A score of {self.knowledge.high_risk_at} or more predicts a high risk of death or "
                "unplanned readmission within 30 days; early follow-up after discharge is recommended."
            ),
            confidence=round(confidence, 2),
            source=self.source,
            evidence=score.evidence,
            suggestions=(self._follow_up(score, data),),
            rule_id=RULE_ID,
            citation=self.knowledge.source,
            extra={"lace": {"total": score.total, "points": list(score.points)}},
        )

    def _follow_up(self, score: LaceScore, data: PatientData) -> ProposedSuggestion:
        today = self.clock().date()
        request = {
            "resourceType": "ServiceRequest",
            "status": "draft",
            "intent": "proposal",
            "priority": "urgent",
            "code": {
                "coding": [{"system": SNOMED, "code": "390906007", "display": "Follow-up encounter"}],
                "text": f"Follow-up visit within {FOLLOW_UP_DAYS} days of discharge",
            },
            "subject": {"reference": f"Patient/{data.patient_id}"},
            "encounter": {"reference": reference(data.encounter or {})},
            "occurrencePeriod": {
                "start": today.isoformat(),
                "end": (today + timedelta(days=FOLLOW_UP_DAYS)).isoformat(),
            },
            "reasonCode": [{"text": f"LACE index {score.total}: high risk of readmission within 30 days"}],
        }
        action = ProposedAction(
            "create", f"Request a follow-up visit within {FOLLOW_UP_DAYS} days", resource=request
        )
        return ProposedSuggestion(f"Book follow-up within {FOLLOW_UP_DAYS} days", (action,), recommended=True)


def _emergent(encounter: dict) -> bool | None:
    hospitalization = encounter.get("hospitalization") or {}
    admit_source = status_code(hospitalization.get("admitSource"))
    priority = status_code(encounter.get("priority"))
    if admit_source is None and priority is None:
        return None
    return admit_source in EMERGENCY_ADMIT_SOURCES or priority in EMERGENCY_PRIORITIES


def _is_in(category: CharlsonCategory, condition: dict) -> bool:
    for coding in codings(condition.get("code")):
        code = str(coding.get("code", ""))
        if coding.get("system") == ICD10CM and code.startswith(category.icd10):
            return True
        if coding.get("system") == SNOMED and code in category.snomed:
            return True
    return False


def _start(encounter: dict) -> datetime | None:
    return parse_datetime((encounter.get("period") or {}).get("start"))
