"""A model card as an AI-ModelCard DocumentReference, in markdown (reference §1(a), §2.2)."""

from __future__ import annotations

import base64
from datetime import datetime

from fhir.resources.R4B.documentreference import DocumentReference

from fhir_profiles.common import CANONICAL, instant, validated

AI_INPUTS = "http://hl7.org/fhir/uv/aitransparency/CodeSystem/AIinputsCS"
PROFILE_AI_MODEL_CARD = "http://hl7.org/fhir/uv/aitransparency/StructureDefinition/AI-ModelCard"
MODEL_CARD_SYSTEM = f"{CANONICAL}/NamingSystem/model-card"


def model_card_document(model_key: str, markdown: str, device_ref: str, when: datetime) -> dict:
    """``type`` is fixed exactly by the profile; the markdown format is the category slice."""
    return validated(
        DocumentReference,
        {
            "resourceType": "DocumentReference",
            "meta": {"profile": [PROFILE_AI_MODEL_CARD]},
            "identifier": [{"system": MODEL_CARD_SYSTEM, "value": model_key}],
            "status": "current",
            "type": {"coding": [{"system": AI_INPUTS, "code": "AIModelCard"}]},
            "category": [{"coding": [{"system": AI_INPUTS, "code": "AIModelCardMarkdownFormat"}]}],
            "date": instant(when),
            "description": f"Model card of {model_key}",
            "context": {"related": [{"reference": device_ref}]},
            "content": [
                {
                    "attachment": {
                        "contentType": "text/markdown",
                        "data": base64.b64encode(markdown.encode()).decode(),
                        "title": f"{model_key} model card",
                    }
                }
            ],
        },
    )
