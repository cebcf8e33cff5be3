"""The draft discharge summary an AI proposes: a preliminary DocumentReference, labelled AIAST.

LOINC 18842-5 "Discharge summary"; ``status`` current with ``docStatus`` preliminary, because a
clinician has not yet reviewed and signed it; the draft itself is a markdown attachment.
"""

from __future__ import annotations

import base64
from datetime import datetime

from fhir.resources.R4B.documentreference import DocumentReference

from fhir_profiles.common import instant, validated
from fhir_profiles.security_labels import AIAST

LOINC = "http://loinc.org"
DISCHARGE_SUMMARY = {"system": LOINC, "code": "18842-5", "display": "Discharge summary"}
TITLE = "Draft discharge summary (AI-generated, preliminary)"


def draft_discharge_summary(patient_id: str, encounter_ref: str, markdown: str, when: datetime) -> dict:
    return validated(
        DocumentReference,
        {
            "resourceType": "DocumentReference",
            "meta": {"security": [dict(AIAST)]},
            "status": "current",
            "docStatus": "preliminary",
            "type": {"coding": [dict(DISCHARGE_SUMMARY)], "text": "Discharge summary"},
            "subject": {"reference": f"Patient/{patient_id}"},
            "date": instant(when),
            "description": TITLE,
            "content": [
                {
                    "attachment": {
                        "contentType": "text/markdown",
                        "data": base64.b64encode(markdown.encode()).decode(),
                        "title": TITLE,
                        "creation": instant(when),
                    }
                }
            ],
            "context": {"encounter": [{"reference": encounter_ref}]},
        },
    )
