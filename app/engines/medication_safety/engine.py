"""The engine: reads the chart, evaluates the rules on the orders under review, and orders the cards."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from app.engines.base import PatientData
from app.engines.fhir_json import LabResult, reference
from app.engines.knowledge_schema import MedicationKnowledge
from app.engines.medication_safety.cards import allergy_card, duplicate_card, interaction_card, renal_card
from app.engines.medication_safety.record import (
    Medication,
    Recogniser,
    is_current_allergy,
    latest_egfr,
    medication_index_of,
)
from app.engines.medication_safety.rules import Rules
from cds_hooks.advice import Advice, AdviceSet, CardSource

SEVERITY = {"critical": 0, "warning": 1, "info": 2}


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MedicationSafetyEngine:
    def __init__(
        self,
        source: CardSource,
        knowledge: MedicationKnowledge,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.source = source
        self.knowledge = knowledge
        self.clock = clock
        self._recogniser = Recogniser(knowledge.drugs)
        self._rules = Rules(knowledge, self._recogniser)

    def suggest(self, data: PatientData) -> AdviceSet:
        """Advice for the orders under review; ``inputs_used`` lists what the decision rested on."""
        medications = medication_index_of(data)
        drafts = [r for r in data.draft_orders if r.get("resourceType") == "MedicationRequest"]
        under_review = {
            reference(r) for r in drafts if not data.selections or reference(r) in data.selections
        }
        recognised_drafts = self._recogniser.medications(drafts, medications, is_draft=True)
        reviewed = [m for m in recognised_drafts if m.reference in under_review]
        if not reviewed:
            return AdviceSet(inputs_used=tuple(sorted(under_review)))

        active = [r for r in data.of_type("MedicationRequest") if r.get("status") == "active"]
        others = [*recognised_drafts, *self._recogniser.medications(active, medications, is_draft=False)]
        allergies = [a for a in data.of_type("AllergyIntolerance") if is_current_allergy(a)]
        used = {reference(r) for r in (*drafts, *active, *allergies)}  # drafts include those under review
        egfr = latest_egfr(data.of_type("Observation")) if self._rules.need_egfr(reviewed) else None
        if egfr is not None:
            used.add(egfr.reference)

        advice = self._advice(reviewed, others, allergies, egfr)
        advice.sort(key=lambda item: SEVERITY[item.indicator])
        return AdviceSet(tuple(advice), tuple(sorted(used)))

    def _advice(
        self,
        reviewed: list[Medication],
        others: list[Medication],
        allergies: list[dict],
        egfr: LabResult | None,
    ) -> list[Advice]:
        """Rule families in a fixed order, so that cards of equal severity always come out the same."""
        rules, source = self._rules, self.source
        max_age_days = self.knowledge.egfr_max_age_days
        return [
            *(renal_card(source, f, max_age_days) for f in rules.renal(reviewed, egfr, self.clock)),
            *(interaction_card(source, *pair) for pair in rules.interactions(reviewed, others)),
            *(duplicate_card(source, *pair) for pair in rules.duplicates(reviewed, others)),
            *(allergy_card(source, *found) for found in rules.allergies(reviewed, allergies)),
        ]
