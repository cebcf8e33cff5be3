"""A prompt template version as an AI-InputPrompt DocumentReference (reference §1(a), §2.3).

Values follow the reference example exactly: the profile, ``type.coding`` = the closed slice
``AIinputsCS#AIInputPrompt`` (no display), ``status`` current, markdown content. The template
only; patient data filled in at run time is never stored here (the inputs are Provenance entities).
"""

from __future__ import annotations

import base64
from datetime import date

from fhir.resources.R4B.documentreference import DocumentReference

from fhir_profiles.common import CANONICAL, validated
from fhir_profiles.model_card import AI_INPUTS

PROFILE_AI_INPUT_PROMPT = "http://hl7.org/fhir/uv/aitransparency/StructureDefinition/AI-InputPrompt"
PROMPT_REGISTRY_SYSTEM = f"{CANONICAL}/NamingSystem/prompt-registry"
PROMPT_SHA256_SYSTEM = f"{CANONICAL}/NamingSystem/prompt-sha256"


def input_prompt_document(
    key: str, version: int, markdown: str, content_sha256: str, description: str, released: date
) -> dict:
    """``key`` is the registry value (``discharge-summary-prompt@1``); the hash pins the version."""
    return validated(
        DocumentReference,
        {
            "resourceType": "DocumentReference",
            "id": f"prompt-{key.split('@')[0].removesuffix('-prompt')}-v{version}",
            "meta": {"profile": [PROFILE_AI_INPUT_PROMPT]},
            "identifier": [
                {"system": PROMPT_REGISTRY_SYSTEM, "value": key},
                {"system": PROMPT_SHA256_SYSTEM, "value": content_sha256},
            ],
            "status": "current",
            "type": {"coding": [{"system": AI_INPUTS, "code": "AIInputPrompt"}]},
            "date": f"{released.isoformat()}T00:00:00Z",
            "description": description,
            "content": [
                {
                    "attachment": {
                        "contentType": "text/markdown",
                        "data": base64.b64encode(markdown.encode()).decode(),
                    }
                }
            ],
        },
    )
