"""Problem-list-gaps engine (offline default): conditions the record implies but the problem list lacks.

At patient-view it reads the problem list, active medications and the labs named in the knowledge
file (``knowledge/problem_list_gaps.yaml``), and for each condition that some finding implies and no
Condition records, proposes a provisional problem-list entry citing that evidence. Confidence is
the strongest finding's, raised a little for each further independent finding.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from app.engines.base import PatientData
from app.engines.fhir_json import (
    ICD10CM,
    SNOMED,
    DrugNames,
    codings,
    lab_results,
    medication_concept,
    medication_index,
    reference,
    status_code,
)
from app.engines.problem_list_knowledge import Finding, ImpliedCondition, ProblemListKnowledge
from cds_hooks.advice import Advice, AdviceSet, CardSource, Evidence, ProposedAction, ProposedSuggestion

CONFIDENCE_PER_EXTRA_FINDING = 0.05
CONFIDENCE_CEILING = 0.97
CLINICAL_STATUS = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION_STATUS = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CONDITION_CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"


@dataclass(frozen=True)
class Match:
    """A finding present in the record, and the resources that show it."""

    finding: Finding
    evidence: tuple[Evidence, ...]


class ProblemListGapsEngine:
    def __init__(self, source: CardSource, knowledge: ProblemListKnowledge) -> None:
        self.source = source
        self.knowledge = knowledge
        self._drug_names = {
            finding.id: DrugNames.of(finding.drugs)
            for implied in knowledge.conditions
            for finding in implied.findings
            if finding.kind == "medication"
        }

    def suggest(self, data: PatientData) -> AdviceSet:
        conditions = [c for c in data.of_type("Condition") if not _entered_in_error(c)]
        medications = [m for m in data.of_type("MedicationRequest") if m.get("status") == "active"]
        observations = data.of_type("Observation")
        used = {reference(r) for r in conditions}
        advice = []
        for implied in self.knowledge.conditions:
            if _recorded(implied, conditions):
                continue
            matches = [m for f in implied.findings if (m := self._match(f, data, medications, observations))]
            used |= {item.reference for match in matches for item in match.evidence}
            if matches:
                advice.append(self._advice(implied, matches, data.patient_id))
        return AdviceSet(tuple(advice), tuple(sorted(used)))

    def _advice(self, implied: ImpliedCondition, matches: list[Match], patient_id: str) -> Advice:
        strongest = max(m.finding.confidence for m in matches)
        confidence = min(CONFIDENCE_CEILING, strongest + CONFIDENCE_PER_EXTRA_FINDING * (len(matches) - 1))
        evidence = tuple(item for match in matches for item in match.evidence)
        found = "; ".join(match.finding.description for match in matches)
        return Advice(
            summary=f"Possible {implied.display.lower()} not on the problem list",
            indicator="info",
            rationale=(
                f"The record shows {found}, which implies {implied.display.lower()}; "
                "no problem-list entry records it. Confirm before adding it as a provisional problem."
            ),
            confidence=round(confidence, 2),
            source=self.source,
            evidence=evidence,
            suggestions=(_add_to_problem_list(implied, patient_id, evidence),),
            rule_id=implied.id,
            citation=" ".join(dict.fromkeys(match.finding.source for match in matches)),
        )

    def _match(
        self, finding: Finding, data: PatientData, medications: list[dict], observations: list[dict]
    ) -> Match | None:
        if finding.kind == "medication":
            return _medication_match(finding, self._drug_names[finding.id], data, medications)
        return _lab_match(finding, observations)


def _medication_match(
    finding: Finding, names: DrugNames, data: PatientData, medications: list[dict]
) -> Match | None:
    index = medication_index(data.of_type("Medication"))
    evidence = []
    for request in medications:
        drugs = names.in_concept(medication_concept(request, index) or {})
        if drugs:
            evidence.append(Evidence(reference(request), f"active order for {'/'.join(drugs)}"))
    return Match(finding, tuple(evidence)) if evidence else None


def _lab_match(finding: Finding, observations: list[dict]) -> Match | None:
    """The latest result must be abnormal; with ``min_span_days``, also one that many days before it."""
    results = lab_results(observations, frozenset(finding.loinc), (finding.unit.lower(),))
    if not results or not finding.abnormal(results[-1].value):
        return None
    latest = results[-1]
    shown = [latest]
    if finding.min_span_days:
        cutoff = latest.when - timedelta(days=finding.min_span_days)
        earlier = [r for r in results if r.when <= cutoff and finding.abnormal(r.value)]
        if not earlier:
            return None
        shown.insert(0, earlier[-1])
    unit = finding.unit
    evidence = tuple(Evidence(r.reference, f"{r.value:g} {unit} on {r.day}") for r in shown)
    return Match(finding, evidence)


def _recorded(implied: ImpliedCondition, conditions: list[dict]) -> bool:
    snomed = set(implied.recorded_as.snomed)
    for condition in conditions:
        for coding in codings(condition.get("code")):
            code = str(coding.get("code", ""))
            if coding.get("system") == SNOMED and code in snomed:
                return True
            if coding.get("system") == ICD10CM and code.startswith(implied.recorded_as.icd10_prefixes):
                return True
    return False


def _entered_in_error(condition: dict) -> bool:
    return status_code(condition.get("verificationStatus")) == "entered-in-error"


def _add_to_problem_list(
    implied: ImpliedCondition, patient_id: str, evidence: tuple[Evidence, ...]
) -> ProposedSuggestion:
    condition = {
        "resourceType": "Condition",
        "clinicalStatus": {"coding": [{"system": CLINICAL_STATUS, "code": "active"}]},
        "verificationStatus": {"coding": [{"system": VERIFICATION_STATUS, "code": "provisional"}]},
        "category": [
            {
                "coding": [
                    {
                        "system": CONDITION_CATEGORY,
                        "code": "problem-list-item",
                        "display": "Problem List Item",
                    }
                ]
            }
        ],
        "code": {
            "coding": [
                {"system": SNOMED, "code": implied.snomed, "display": implied.display},
                {"system": ICD10CM, "code": implied.icd10, "display": implied.display},
            ],
            "text": implied.display,
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "evidence": [{"detail": [{"reference": item.reference} for item in evidence]}],
    }
    action = ProposedAction(
        "create", f"Add {implied.display} (provisional) to the problem list", resource=condition
    )
    return ProposedSuggestion(
        f"Add {implied.display.lower()} to the problem list", (action,), recommended=True
    )
