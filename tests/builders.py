"""Builders of realistic CDS Hooks requests and FHIR resources for the tests (synthetic data only)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

PATIENT_ID = "pat-renal-001"
USER_ID = "Practitioner/prac-001"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
METFORMIN = ("860975", "metformin hydrochloride 500 MG Oral Tablet")


def moment(seconds_from_now: float = 0) -> str:
    """An RFC 3339 instant relative to now, so that no test depends on the date it runs."""
    at = datetime.now(UTC) + timedelta(seconds=seconds_from_now)
    return at.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def patient(patient_id: str = PATIENT_ID) -> dict:
    return {
        "resourceType": "Patient",
        "id": patient_id,
        "gender": "female",
        "birthDate": "1956-03-14",
    }


def egfr(value: float, days_ago: int = 10, obs_id: str | None = None, patient_id: str = PATIENT_ID) -> dict:
    return {
        "resourceType": "Observation",
        "id": obs_id or f"egfr-{uuid.uuid4().hex[:8]}",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": "98979-8", "display": "eGFR CKD-EPI 2021"}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": (date.today() - timedelta(days=days_ago)).isoformat(),
        "valueQuantity": {
            "value": value,
            "unit": "mL/min/1.73m2",
            "system": "http://unitsofmeasure.org",
            "code": "mL/min/{1.73_m2}",
        },
    }


def medication_request(
    med_id: str,
    rxnorm: tuple[str, str] = METFORMIN,
    *,
    status: str = "draft",
    dose_mg: float = 1000,
    per_day: int = 2,
    patient_id: str = PATIENT_ID,
) -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": med_id,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": rxnorm[0], "display": rxnorm[1]}],
            "text": rxnorm[1],
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "dosageInstruction": [
            {
                "text": f"{dose_mg:g} mg by mouth {per_day} times daily",
                "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [
                    {
                        "doseQuantity": {
                            "value": dose_mg,
                            "unit": "mg",
                            "system": "http://unitsofmeasure.org",
                            "code": "mg",
                        }
                    }
                ],
            }
        ],
    }


def searchset(resources: list[dict]) -> dict:
    bundle: dict = {"resourceType": "Bundle", "type": "searchset", "total": len(resources)}
    if resources:
        bundle["entry"] = [{"resource": resource} for resource in resources]
    return bundle


def collection(resources: list[dict]) -> dict:
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}


def order_sign_request(
    draft_orders: list[dict],
    prefetch: dict | None = None,
    *,
    patient_id: str = PATIENT_ID,
    user_id: str = USER_ID,
    **extra: object,
) -> dict:
    """An order-sign call; ``prefetch=None`` sends a full prefetch for a patient with eGFR 25."""
    body: dict = {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": user_id,
            "patientId": patient_id,
            "draftOrders": collection(draft_orders),
        },
        "prefetch": prefetch if prefetch is not None else full_prefetch(egfr_value=25),
    }
    body.update(extra)
    return body


def full_prefetch(egfr_value: float = 25, patient_id: str = PATIENT_ID) -> dict:
    return {
        "patient": patient(patient_id),
        "medications": searchset([]),
        "renalFunction": searchset([egfr(egfr_value, patient_id=patient_id)]),
        "allergies": searchset([]),
        "conditions": searchset([]),
    }


def lab(
    loinc: str, value: float, unit: str, days_ago: int, obs_id: str, patient_id: str = PATIENT_ID
) -> dict:
    """A final laboratory result (HbA1c 4548-4 in %, eGFR 98979-8 in mL/min/1.73m2, ...)."""
    return {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": (date.today() - timedelta(days=days_ago)).isoformat(),
        "valueQuantity": {"value": value, "unit": unit},
    }


def condition(condition_id: str, system: str, code: str, *, verification: str = "confirmed") -> dict:
    return {
        "resourceType": "Condition",
        "id": condition_id,
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "verificationStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": verification}
            ]
        },
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
    }


def patient_view_request(prefetch: dict, *, patient_id: str = PATIENT_ID, user_id: str = USER_ID) -> dict:
    return {
        "hook": "patient-view",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": user_id, "patientId": patient_id},
        "prefetch": prefetch,
    }
