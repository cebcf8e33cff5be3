"""Deterministic synthetic requests: a realistic order-sign call and prefetches of a given size."""

from __future__ import annotations

import random
import uuid
from datetime import date, timedelta

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
PATIENT_ID = "bench-patient-1"
ACTIVE_MEDICATIONS = [
    ("314076", "lisinopril 10 MG Oral Tablet"),
    ("617312", "atorvastatin 40 MG Oral Tablet"),
    ("855332", "warfarin sodium 5 MG Oral Tablet"),
    ("310798", "hydrochlorothiazide 25 MG Oral Tablet"),
    ("197361", "amlodipine 5 MG Oral Tablet"),
    ("311671", "levothyroxine sodium 0.05 MG Oral Tablet"),
    ("198211", "simvastatin 40 MG Oral Tablet"),
    ("866924", "metoprolol tartrate 25 MG Oral Tablet"),
]
CONDITIONS = [
    ("38341003", "Hypertensive disorder"),
    ("44054006", "Type 2 diabetes mellitus"),
    ("55822004", "Hyperlipidemia"),
    ("49436004", "Atrial fibrillation"),
    ("433144002", "Chronic kidney disease stage 3"),
    ("40930008", "Hypothyroidism"),
    ("195967001", "Asthma"),
    ("35489007", "Depressive disorder"),
    ("239873007", "Osteoarthritis of knee"),
    ("414916001", "Obesity"),
    ("73211009", "Diabetes mellitus"),
    ("266569009", "Benign prostatic hyperplasia"),
    ("197480006", "Anxiety disorder"),
    ("68566005", "Urinary tract infection"),
    ("235595009", "Gastroesophageal reflux disease"),
    ("84114007", "Heart failure"),
]
LAB_CODES = [
    ("98979-8", "eGFR CKD-EPI 2021", "mL/min/1.73m2"),
    ("2160-0", "Creatinine", "mg/dL"),
    ("4548-4", "Hemoglobin A1c", "%"),
    ("2823-3", "Potassium", "mmol/L"),
    ("718-7", "Hemoglobin", "g/dL"),
]


def _observation(rng: random.Random, index: int, code: tuple[str, str, str], days_ago: int) -> dict:
    value = 25.0 if code[0] == "98979-8" and days_ago < 30 else round(rng.uniform(1, 120), 1)
    return {
        "resourceType": "Observation",
        "id": f"obs-{index}",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": code[0], "display": code[1]}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": (date.today() - timedelta(days=days_ago)).isoformat(),
        "valueQuantity": {"value": value, "unit": code[2]},
    }


def observations(count: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    return [_observation(rng, i, LAB_CODES[i % len(LAB_CODES)], 1 + i) for i in range(count)]


def _medication(med_id: str, coding: tuple[str, str], status: str, dose_mg: float) -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": med_id,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {
            "coding": [{"system": RXNORM, "code": coding[0], "display": coding[1]}]
        },
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "dosageInstruction": [
            {
                "text": f"{dose_mg:g} mg twice daily",
                "timing": {"repeat": {"frequency": 2, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": dose_mg, "unit": "mg"}}],
            }
        ],
    }


def _bundle(resources: list[dict], bundle_type: str = "searchset") -> dict:
    return {
        "resourceType": "Bundle",
        "type": bundle_type,
        "total": len(resources),
        "entry": [{"resource": r} for r in resources],
    }


def order_sign(observation_count: int = 40) -> dict:
    """Patient, 16 Conditions, 8 active meds, labs over time, and two draft orders to sign."""
    conditions = [
        {
            "resourceType": "Condition",
            "id": f"cond-{i}",
            "subject": {"reference": f"Patient/{PATIENT_ID}"},
            "clinicalStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
                ]
            },
            "code": {"coding": [{"system": SNOMED, "code": code, "display": display}]},
        }
        for i, (code, display) in enumerate(CONDITIONS)
    ]
    active = [_medication(f"med-{i}", coding, "active", 10) for i, coding in enumerate(ACTIVE_MEDICATIONS)]
    drafts = [
        _medication(
            "draft-metformin", ("860975", "metformin hydrochloride 500 MG Oral Tablet"), "draft", 1000
        ),
        _medication("draft-ibuprofen", ("197806", "ibuprofen 600 MG Oral Tablet"), "draft", 600),
    ]
    return {
        "hook": "order-sign",
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/bench-prac",
            "patientId": PATIENT_ID,
            "draftOrders": _bundle(drafts, "collection"),
        },
        "prefetch": {
            "patient": {
                "resourceType": "Patient",
                "id": PATIENT_ID,
                "gender": "female",
                "birthDate": "1950-02-01",
            },
            "medications": _bundle(active),
            "renalFunction": _bundle(observations(observation_count)),
            "allergies": _bundle([]),
            "conditions": _bundle(conditions),
        },
    }
