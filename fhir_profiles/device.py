"""The AI-Device for one released model version (reference §1(a), AI Transparency IG)."""

from __future__ import annotations

import copy
import functools

from fhir.resources.R4B.device import Device

from fhir_profiles.common import CANONICAL, PROFILE_AI_DEVICE, validated

MODEL_VERSION_SYSTEM = f"{CANONICAL}/NamingSystem/model-version"
SERVICE_SYSTEM = f"{CANONICAL}/NamingSystem/service"
CDS_SERVICE, GOVERNANCE_SERVICE = "countersign-cds-service", "countersign-governance"
SMART_APP = "countersign-smart-app"
SERVICE_NAMES = {
    CDS_SERVICE: "Countersign CDS Hooks service",
    GOVERNANCE_SERVICE: "Countersign governance service",
    SMART_APP: "Countersign SMART app",
}


def model_identifier(model_key: str) -> dict:
    return {"system": MODEL_VERSION_SYSTEM, "value": model_key}


def service_identifier(service_key: str) -> dict:
    return {"system": SERVICE_SYSTEM, "value": service_key}


def service_device(service_key: str) -> dict:
    """Countersign's own software, the observer and agent of its AuditEvents: written to the server
    (conditional create on this identifier) before anything there points at it."""
    return validated(
        Device,
        {
            "resourceType": "Device",
            "identifier": [service_identifier(service_key)],
            "status": "active",
            "manufacturer": "Countersign",
            "deviceName": [{"name": SERVICE_NAMES[service_key], "type": "user-friendly-name"}],
        },
    )


def ai_device(model_key: str, name: str, version: str, model_card_url: str) -> dict:
    """``type`` is fixed exactly by the profile, so it carries no display.

    One Device per model version, identical in every Bundle: validated once, copied per use.
    """
    return copy.deepcopy(_validated_device(model_key, name, version, model_card_url))


@functools.cache
def _validated_device(model_key: str, name: str, version: str, model_card_url: str) -> dict:
    return validated(
        Device,
        {
            "resourceType": "Device",
            "meta": {"profile": [PROFILE_AI_DEVICE]},
            "identifier": [model_identifier(model_key)],
            "status": "active",
            "type": {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/uv/aitransparency/CodeSystem/AIdeviceTypeCS",
                        "code": "Artificial-Intelligence",
                    }
                ]
            },
            "deviceName": [{"name": name, "type": "user-friendly-name"}],
            "version": [{"value": version}],
            "url": model_card_url,
        },
    )
