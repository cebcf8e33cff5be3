"""What the chart shows, read from the FHIR server: banner, problems, medications, allergies, labs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from app.engines.fhir_json import age_in_years
from sandbox.ehr.fhir_store import FhirStore


@dataclass(frozen=True)
class LabRow:
    name: str
    value: str
    when: str
    previous: str = ""


@dataclass
class Chart:
    patient: dict
    problems: list[str] = field(default_factory=list)
    medications: list[dict] = field(default_factory=list)
    drafts: list[dict] = field(default_factory=list)
    allergies: list[str] = field(default_factory=list)
    labs: list[LabRow] = field(default_factory=list)
    admission: dict | None = None
    visits: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return display_name(self.patient)

    @property
    def age(self) -> int | None:
        return age_in_years(self.patient, date.today())

    @property
    def mrn(self) -> str:
        return next((i.get("value", "") for i in self.patient.get("identifier", ())), "")


def display_name(patient: dict) -> str:
    name = next(iter(patient.get("name") or ()), {})
    return f"{name.get('family', '').upper()}, {' '.join(name.get('given', ()))}".strip(", ")


def concept_text(concept: dict | None) -> str:
    concept = concept or {}
    return concept.get("text") or next((c.get("display", "") for c in concept.get("coding", ())), "")


def dosage_text(order: dict) -> str:
    return "; ".join(d.get("text", "") for d in order.get("dosageInstruction", ()) if d.get("text"))


def load_chart(store: FhirStore, patient_id: str) -> Chart:
    chart = Chart(store.read("Patient", patient_id))
    chart.problems = [
        concept_text(c.get("code"))
        for c in store.search("Condition", patient=patient_id, **{"clinical-status": "active"})
    ]
    orders = store.search("MedicationRequest", patient=patient_id, status="active,draft")
    chart.medications = [o for o in orders if o.get("status") == "active"]
    chart.drafts = [o for o in orders if o.get("status") == "draft"]
    chart.allergies = [_allergy_text(a) for a in store.search("AllergyIntolerance", patient=patient_id)]
    chart.labs = _latest_labs(store.search("Observation", patient=patient_id, _sort="-date"))
    encounters = store.search("Encounter", patient=patient_id, _sort="-date")
    chart.admission = next((e for e in encounters if e.get("status") == "in-progress"), None)
    chart.visits = [_visit_text(e) for e in encounters if e.get("status") == "finished"][:5]
    return chart


def _allergy_text(allergy: dict) -> str:
    reactions = [concept_text(m) for r in allergy.get("reaction", ()) for m in r.get("manifestation", ())]
    criticality = allergy.get("criticality")
    text = concept_text(allergy.get("code"))
    if reactions:
        text += f" ({', '.join(reactions)})"
    return text + (" — high criticality" if criticality == "high" else "")


def _latest_labs(observations: list[dict]) -> list[LabRow]:
    """The newest result of each test, with the one before it (observations come newest first)."""
    by_test: dict[str, list[dict]] = {}
    for observation in observations:
        by_test.setdefault(concept_text(observation.get("code")), []).append(observation)
    return [
        LabRow(
            name,
            _value(results[0]),
            (results[0].get("effectiveDateTime") or "")[:10],
            _value(results[1]) + f" ({(results[1].get('effectiveDateTime') or '')[:10]})"
            if len(results) > 1
            else "",
        )
        for name, results in by_test.items()
    ]


def _value(observation: dict) -> str:
    quantity = observation.get("valueQuantity") or {}
    unit = quantity.get("unit", "")
    return f"{quantity.get('value', '')} {'' if unit.startswith('{') else unit}".strip()


def _visit_text(encounter: dict) -> str:
    kind = (encounter.get("class") or {}).get("display", "")
    reason = concept_text(next(iter(encounter.get("reasonCode") or ()), None))
    start = ((encounter.get("period") or {}).get("start") or "")[:10]
    return f"{start} · {kind} · {reason}"
