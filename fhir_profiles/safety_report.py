"""An AI-associated safety event as an R4 AdverseEvent with the AI Device as suspect (reference §2.19)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fhir.resources.R4B.adverseevent import AdverseEvent

from fhir_profiles.common import TERMINOLOGY, instant, validated


@dataclass(frozen=True)
class SafetyReport:
    patient_id: str
    device_ref: str
    description: str
    category: str
    severity: str
    occurred_at: datetime
    detected_at: datetime
    recorded_at: datetime
    recorder_ref: str
    causality: str = "Possible"
    encounter_id: str | None = None


def adverse_event(report: SafetyReport) -> dict:
    """``detected`` minus the card's time is the time-to-detect a safety dashboard reports."""
    data: dict = {
        "resourceType": "AdverseEvent",
        "actuality": "actual",
        "category": [
            {"coding": [{"system": f"{TERMINOLOGY}/adverse-event-category", "code": report.category}]}
        ],
        "event": {"text": report.description},
        "subject": {"reference": f"Patient/{report.patient_id}"},
        "date": instant(report.occurred_at),
        "detected": instant(report.detected_at),
        "recordedDate": instant(report.recorded_at),
        "severity": {
            "coding": [{"system": f"{TERMINOLOGY}/adverse-event-severity", "code": report.severity}]
        },
        "recorder": {"reference": report.recorder_ref},
        "suspectEntity": [
            {
                "instance": {"reference": report.device_ref},
                "causality": [
                    {
                        "assessment": {
                            "coding": [
                                {
                                    "system": f"{TERMINOLOGY}/adverse-event-causality-assess",
                                    "code": report.causality,
                                }
                            ]
                        }
                    }
                ],
            }
        ],
    }
    if report.encounter_id:
        data["encounter"] = {"reference": f"Encounter/{report.encounter_id}"}
    return validated(AdverseEvent, data)
