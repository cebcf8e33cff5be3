"""Builders of the synthetic chart's FHIR R4 resources (pure: no I/O).

Dates are given as days before a reference day, so that a chart loaded any day keeps the same
clinical story (a lab 12 days old stays 12 days old). Ids are fixed, so a reload replaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
UCUM = "http://unitsofmeasure.org"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
MRN_SYSTEM = "https://sandbox-ehr.countersign.local/mrn"
# Marks every resource as test data (v3 ActReason HTEST), so nobody mistakes it for a person's.
SYNTHETIC_TAG = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "code": "HTEST",
    "display": "test health data",
}


@dataclass(frozen=True)
class Clock:
    """The reference day of a chart: every date is written relative to it."""

    today: date

    def day(self, days_ago: int) -> str:
        return (self.today - timedelta(days=days_ago)).isoformat()

    def moment(self, days_ago: int, hour: int = 9) -> str:
        return f"{self.day(days_ago)}T{hour:02d}:30:00Z"

    def birth_date(self, age_years: int, month: int, day: int) -> str:
        """Born ``age_years`` ago on ``month``/``day`` (so the age is that, or a year less)."""
        return date(self.today.year - age_years, month, day).isoformat()


def _meta() -> dict:
    return {"tag": [dict(SYNTHETIC_TAG)]}


def _concept(system: str, code: str, display: str, text: str | None = None) -> dict:
    return {"coding": [{"system": system, "code": code, "display": display}], "text": text or display}


def patient(pid: str, given: str, family: str, gender: str, birth_date: str, mrn: str) -> dict:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": _meta(),
        "identifier": [{"system": MRN_SYSTEM, "value": mrn}],
        "active": True,
        "name": [{"use": "official", "family": family, "given": [given]}],
        "gender": gender,
        "birthDate": birth_date,
    }


def practitioner(pid: str, given: str, family: str) -> dict:
    return {
        "resourceType": "Practitioner",
        "id": pid,
        "meta": _meta(),
        "name": [{"family": family, "given": [given], "prefix": ["Dr"]}],
    }


def condition(
    pid: str, rid: str, snomed: str, icd10: str, display: str, onset: str, status: str = "active"
) -> dict:
    """A problem-list entry coded in SNOMED CT and ICD-10-CM (engines may read either)."""
    concept = _concept(SNOMED, snomed, display)
    concept["coding"].append({"system": ICD10, "code": icd10, "display": display})
    return {
        "resourceType": "Condition",
        "id": rid,
        "meta": _meta(),
        "clinicalStatus": _concept(
            "http://terminology.hl7.org/CodeSystem/condition-clinical", status, status.capitalize()
        ),
        "verificationStatus": _concept(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"
        ),
        "category": [
            _concept(
                "http://terminology.hl7.org/CodeSystem/condition-category",
                "problem-list-item",
                "Problem List Item",
            )
        ],
        "code": concept,
        "subject": {"reference": f"Patient/{pid}"},
        "onsetDateTime": onset,
        "recordedDate": onset,
    }


def medication_request(
    pid: str,
    rid: str,
    rxnorm: str,
    ingredient: str,
    product: str,
    dose: float,
    per_day: int,
    authored: str,
    *,
    unit: str = "mg",
    status: str = "active",
    requester: str | None = None,
) -> dict:
    """An order coded by its RxNorm ingredient, the product in ``text``, with a structured dose."""
    times = {1: "once", 2: "twice", 3: "three times", 4: "four times"}.get(per_day, f"{per_day} times")
    order: dict = {
        "resourceType": "MedicationRequest",
        "id": rid,
        "meta": _meta(),
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": _concept(RXNORM, rxnorm, ingredient, product),
        "subject": {"reference": f"Patient/{pid}"},
        "authoredOn": authored,
        "dosageInstruction": [
            {
                "text": f"{dose:g} {unit} by mouth {times} daily",
                "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                "route": _concept(SNOMED, "26643006", "Oral route"),
                "doseAndRate": [
                    {"doseQuantity": {"value": dose, "unit": unit, "system": UCUM, "code": unit}}
                ],
            }
        ],
    }
    if requester:
        order["requester"] = {"reference": requester}
    return order


def allergy(
    pid: str,
    rid: str,
    code: tuple[str, str, str],
    *,
    criticality: str,
    reaction: tuple[str, str] | None,
    recorded: str,
) -> dict:
    """``code`` is (system, code, display); ``reaction`` a SNOMED manifestation (code, display)."""
    resource: dict = {
        "resourceType": "AllergyIntolerance",
        "id": rid,
        "meta": _meta(),
        "clinicalStatus": _concept(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "active", "Active"
        ),
        "verificationStatus": _concept(
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "confirmed", "Confirmed"
        ),
        "type": "allergy",
        "category": ["medication"],
        "criticality": criticality,
        "code": _concept(*code),
        "patient": {"reference": f"Patient/{pid}"},
        "recordedDate": recorded,
    }
    if reaction:
        resource["reaction"] = [{"manifestation": [_concept(SNOMED, *reaction)]}]
    return resource


def lab(pid: str, rid: str, loinc: str, display: str, value: float, unit: str, ucum: str, when: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": rid,
        "meta": _meta(),
        "status": "final",
        "category": [
            _concept("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "Laboratory")
        ],
        "code": _concept(LOINC, loinc, display),
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "issued": when,
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": ucum},
    }


ENCOUNTER_CLASSES = {
    "AMB": "ambulatory",
    "EMER": "emergency",
    "IMP": "inpatient encounter",
}


def encounter(
    pid: str,
    rid: str,
    class_code: str,
    reason: tuple[str, str],
    start: str,
    end: str | None,
    *,
    emergency_admission: bool = False,
    practitioner: str | None = None,
) -> dict:
    """``end`` None: still in progress (an inpatient awaiting discharge). ``reason`` is SNOMED."""
    resource: dict = {
        "resourceType": "Encounter",
        "id": rid,
        "meta": _meta(),
        "status": "in-progress" if end is None else "finished",
        "class": {"system": ACT_CODE, "code": class_code, "display": ENCOUNTER_CLASSES[class_code]},
        "subject": {"reference": f"Patient/{pid}"},
        "period": {"start": start} | ({"end": end} if end else {}),
        "reasonCode": [_concept(SNOMED, *reason)],
    }
    if class_code == "IMP":
        priority = ("EM", "emergency") if emergency_admission else ("EL", "elective")
        resource["priority"] = _concept("http://terminology.hl7.org/CodeSystem/v3-ActPriority", *priority)
        source = (
            ("emd", "From accident/emergency department")
            if emergency_admission
            else (
                "gp",
                "General Practitioner referral",
            )
        )
        resource["hospitalization"] = {
            "admitSource": _concept("http://terminology.hl7.org/CodeSystem/admit-source", *source)
        }
    if practitioner:
        resource["participant"] = [{"individual": {"reference": practitioner}}]
    return resource


def transaction(resources: list[dict]) -> dict:
    """A transaction of PUTs with the resources' own ids: loading twice leaves one copy."""
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
            for resource in resources
        ],
    }
