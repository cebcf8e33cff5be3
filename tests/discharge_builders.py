"""A synthetic inpatient about to be discharged, full of identifiers that must never leave."""

from __future__ import annotations

import json
import uuid

from tests.builders import USER_ID, searchset

PATIENT_ID = "pat-discharge-001"
ENCOUNTER_ID = "enc-2026-0042"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
XHTML = "http://www.w3.org/1999/xhtml"

# Every value here identifies the patient; none may appear in anything sent to a model.
IDENTIFYING = (
    "Maria",
    "Elena",
    "Garcia",
    "MRN-4471829",
    "4471829",
    "123-45-6789",
    "555-201-3344",
    "201-3344",
    "2013344",
    "maria.garcia@example.org",
    "Wallaby",
    "Springfield",
    "62704",
    "Jose",
    "555-777-1212",
    "1956-03-14",
    "03/14/1956",
    PATIENT_ID,
)


def patient() -> dict:
    return {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "identifier": [
            {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "MRN-4471829"},
            {"system": "http://hl7.org/fhir/sid/us-ssn", "value": "123-45-6789"},
        ],
        "name": [{"use": "official", "family": "Garcia", "given": ["Maria", "Elena"]}],
        "telecom": [
            {"system": "phone", "value": "555-201-3344", "use": "home"},
            {"system": "email", "value": "maria.garcia@example.org"},
        ],
        "gender": "female",
        "birthDate": "1956-03-14",
        "address": [
            {"line": ["42 Wallaby Way"], "city": "Springfield", "state": "IL", "postalCode": "62704"}
        ],
        "contact": [
            {
                "name": {"family": "Garcia", "given": ["Jose"]},
                "telecom": [{"system": "phone", "value": "555-777-1212"}],
            }
        ],
        "text": {"status": "generated", "div": f'<div xmlns="{XHTML}">Maria Elena Garcia, MRN-4471829</div>'},
    }


def encounter() -> dict:
    return {
        "resourceType": "Encounter",
        "id": ENCOUNTER_ID,
        "identifier": [{"system": "urn:visit", "value": "V-99812"}],
        "status": "in-progress",
        "class": {
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
            "code": "IMP",
            "display": "inpatient encounter",
        },
        "subject": {"reference": f"Patient/{PATIENT_ID}", "display": "Maria Elena Garcia"},
        "period": {"start": "2026-02-01T08:30:00Z", "end": "2026-02-06T11:00:00Z"},
        "reasonCode": [{"text": "Fever and productive cough"}],
    }


def condition(cid: str, code: str, display: str, onset: str, note: str | None = None) -> dict:
    resource = {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
            ]
        },
        "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "encounter": {"reference": f"Encounter/{ENCOUNTER_ID}"},
        "onsetDateTime": onset,
    }
    if note:
        resource["note"] = [{"text": note}]
    return resource


def procedure() -> dict:
    return {
        "resourceType": "Procedure",
        "id": "proc-cxr",
        "status": "completed",
        "code": {"coding": [{"system": SNOMED, "code": "399208008", "display": "Chest X-ray"}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "encounter": {"reference": f"Encounter/{ENCOUNTER_ID}"},
        "performedDateTime": "2026-02-01T10:00:00Z",
    }


def medication() -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": "med-amox",
        "status": "active",
        "intent": "order",
        "medicationCodeableConcept": {"text": "amoxicillin 875 mg oral tablet"},
        "subject": {"reference": f"Patient/{PATIENT_ID}", "display": "Maria Garcia"},
        "dosageInstruction": [{"text": "875 mg by mouth twice daily for 5 days"}],
        "note": [{"text": "Call daughter on (555) 201-3344 if rash; chart MRN-4471829"}],
    }


def lab(oid: str, code: str, display: str, value: float, unit: str, when: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": oid,
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
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}]},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "effectiveDateTime": when,
        "valueQuantity": {"value": value, "unit": unit},
    }


def discharge_prefetch() -> dict:
    return {
        "patient": patient(),
        "encounter": encounter(),
        "conditions": searchset(
            [
                condition(
                    "cond-cap",
                    "385093006",
                    "Community acquired pneumonia",
                    "2026-02-01",
                    note=(
                        "Maria Garcia (born 03/14/1956) seen by her GP; SSN 123-45-6789, "
                        "mail maria.garcia@example.org"
                    ),
                ),
                condition("cond-t2dm", "44054006", "Type 2 diabetes mellitus", "2015-06-20"),
            ]
        ),
        "procedures": searchset([procedure()]),
        "medications": searchset([medication()]),
        "labs": searchset(
            [
                lab("obs-crp-1", "1988-5", "C reactive protein", 182, "mg/L", "2026-02-01T09:00:00Z"),
                lab("obs-crp-2", "1988-5", "C reactive protein", 24, "mg/L", "2026-02-05T09:00:00Z"),
                lab("obs-wbc", "6690-2", "Leukocytes", 8.1, "10*3/uL", "2026-02-05T09:00:00Z"),
            ]
        ),
    }


def discharge_request(prefetch: dict | None = None) -> dict:
    return {
        "hook": "encounter-discharge",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": USER_ID, "patientId": PATIENT_ID, "encounterId": ENCOUNTER_ID},
        "prefetch": prefetch if prefetch is not None else discharge_prefetch(),
    }


def model_answer(body: dict) -> dict:
    """A well-behaved model: one sentence per de-identified resource it was given, citing it by its
    pseudonymous reference, plus one sentence citing a resource that was never given (to be dropped)."""
    user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    resources = json.loads(user.split("\n", 1)[1])
    diagnoses = [
        {
            "text": f"{r['code']['text']} since {r['onsetDateTime'][:10]}.",
            "sources": [f"Condition/{r['id']}"],
        }
        for r in resources
        if r["resourceType"] == "Condition"
    ]
    encounter = next(r for r in resources if r["resourceType"] == "Encounter")
    return {
        "sections": [
            {
                "title": "Hospital course",
                "sentences": [
                    {
                        "text": f"Admitted {encounter['period']['start'][:10]} with fever and cough.",
                        "sources": [f"Encounter/{encounter['id']}"],
                    },
                    {"text": "Developed sepsis on day 2.", "sources": ["Condition/ref-999"]},
                ],
            },
            {"title": "Diagnoses", "sentences": diagnoses},
        ]
    }
