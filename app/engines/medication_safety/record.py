"""Reading the chart: the orders recognised as knowledge-base drugs, current allergies, latest eGFR.

Resources are read as plain JSON, each prefetched list once, so thousands of observations cost
milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from app.engines.base import PatientData
from app.engines.fhir_json import (
    DrugNames,
    LabResult,
    lab_results,
    medication_concept,
    medication_index,
    reference,
    status_code,
)
from app.engines.knowledge_schema import Drug, DrugSelector

EGFR_LOINC = frozenset({"33914-3", "48642-3", "48643-1", "62238-1", "98979-8", "69405-9"})


@dataclass(frozen=True)
class Medication:
    """A MedicationRequest recognised as one or more ingredients of the knowledge base."""

    reference: str
    ingredients: tuple[str, ...]
    classes: frozenset[str]
    resource: dict
    is_draft: bool

    @property
    def name(self) -> str:
        return "/".join(self.ingredients)

    @property
    def role(self) -> str:
        return "draft order" if self.is_draft else "active medication"

    def is_(self, selector: DrugSelector) -> bool:
        return selector.matches(self.ingredients, self.classes)


class Recogniser:
    """The knowledge base's drug names, compiled once: which of its drugs a concept names."""

    def __init__(self, drugs: Mapping[str, Drug]) -> None:
        self._drugs = drugs
        self._names = DrugNames.of({name: drug.rxnorm for name, drug in drugs.items()})

    def ingredients(self, concept: dict) -> tuple[str, ...]:
        return self._names.in_concept(concept)

    def medications(
        self, requests: list[dict], index: dict[str, dict], *, is_draft: bool
    ) -> list[Medication]:
        """The requests naming a known drug; the others cannot break a rule and are left out."""
        recognised = (self._medication(r, index, is_draft) for r in requests)
        return [m for m in recognised if m is not None]

    def _medication(self, request: dict, index: dict[str, dict], is_draft: bool) -> Medication | None:
        concept = medication_concept(request, index)
        if concept is None:
            return None
        ingredients = self.ingredients(concept)
        if not ingredients:
            return None
        classes = frozenset(c for name in ingredients for c in self._drugs[name].classes)
        return Medication(reference(request), ingredients, classes, request, is_draft)


def medication_index_of(data: PatientData) -> dict[str, dict]:
    """Medication resources a ``medicationReference`` may point at, by "Medication/id"."""
    return medication_index((*data.of_type("Medication"), *data.draft_orders))


def latest_egfr(observations: list[dict]) -> LabResult | None:
    """The most recent valid eGFR in mL/min(/1.73m2); a result in any other unit is not used."""
    results = lab_results(observations, EGFR_LOINC, ("ml/min",))
    return results[-1] if results else None


def is_current_allergy(allergy: dict) -> bool:
    """Unconfirmed allergies still count; refuted or mistaken ones do not."""
    clinical = status_code(allergy.get("clinicalStatus"))
    verification = status_code(allergy.get("verificationStatus"))
    return clinical in (None, "active") and verification not in ("refuted", "entered-in-error")
