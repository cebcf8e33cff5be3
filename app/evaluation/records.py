"""Minimal FHIR resources for evaluation cohorts: only what the engines read, as plain JSON."""

from __future__ import annotations

from datetime import datetime, timedelta

from app.engines.fhir_json import ICD10CM, LOINC, RXNORM, SNOMED

ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"


def lab(obs_id: str, patient_id: str, loinc: str, value: float, unit: str, when: datetime) -> dict:
    return {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": loinc}]},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": when.isoformat(),
        "valueQuantity": {"value": round(value, 1), "unit": unit},
    }


def medication(
    med_id: str, patient_id: str, drug: tuple[str | None, str], status: str, mg: float = 0, per_day: int = 1
) -> dict:
    """``drug`` is (RxNorm code or None for a text-only entry, name)."""
    code, name = drug
    concept: dict = {"text": name}
    if code is not None:
        concept["coding"] = [{"system": RXNORM, "code": code, "display": name}]
    request: dict = {
        "resourceType": "MedicationRequest",
        "id": med_id,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": concept,
        "subject": {"reference": f"Patient/{patient_id}"},
    }
    if mg:
        request["dosageInstruction"] = [
            {
                "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg", "code": "mg"}}],
            }
        ]
    return request


def condition(
    cond_id: str, patient_id: str, *, snomed: str | None = None, icd10: str | None = None, display: str = ""
) -> dict:
    codings = []
    if snomed:
        codings.append(
            {"system": SNOMED, "code": snomed, "display": display}
            if display
            else {"system": SNOMED, "code": snomed}
        )
    if icd10:
        codings.append({"system": ICD10CM, "code": icd10})
    return {
        "resourceType": "Condition",
        "id": cond_id,
        "verificationStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}
            ]
        },
        "code": {"coding": codings},
        "subject": {"reference": f"Patient/{patient_id}"},
    }


def encounter(
    enc_id: str, patient_id: str, klass: str, start: datetime, hours: float, **extra: object
) -> dict:
    return {
        "resourceType": "Encounter",
        "id": enc_id,
        "status": "finished",
        "class": {"system": ACT_CODE, "code": klass},
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": {"start": start.isoformat(), "end": (start + timedelta(hours=hours)).isoformat()},
    } | extra


def procedure(
    proc_id: str, patient_id: str, encounter_id: str, snomed: str, display: str, when: datetime
) -> dict:
    return {
        "resourceType": "Procedure",
        "id": proc_id,
        "status": "completed",
        "code": {"coding": [{"system": SNOMED, "code": snomed, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient_id}"},
        "encounter": {"reference": f"Encounter/{encounter_id}"},
        "performedDateTime": when.isoformat(),
    }
