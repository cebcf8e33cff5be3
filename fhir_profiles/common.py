"""Codes, canonical URLs and validation shared by the builders (values from reference §1-§2)."""

from __future__ import annotations

from datetime import UTC, datetime

from fhir.resources.R4B.fhirresourcemodel import FHIRResourceModel

from fhir_profiles.security_labels import AIAST

CANONICAL = "https://countersign.health/fhir"
PROFILE_AI_PROVENANCE = "http://hl7.org/fhir/uv/aitransparency/StructureDefinition/AI-Provenance"
PROFILE_AI_DEVICE = "http://hl7.org/fhir/uv/aitransparency/StructureDefinition/AI-Device"
PROFILE_REQUEST_GROUP = (
    "http://hl7.org/fhir/uv/cds-hooks-clinical-reasoning/StructureDefinition/cdshooksrequestgroup"
)
PROFILE_CDS_CALL_AUDIT = f"{CANONICAL}/StructureDefinition/ai-cds-service-call-audit"
PROFILE_WRITE_BACK_AUDIT = f"{CANONICAL}/StructureDefinition/ai-write-back-audit"
PROFILE_OVERRIDE_TASK = f"{CANONICAL}/StructureDefinition/ai-override-task"
PROFILE_SERVICE_READ_AUDIT = f"{CANONICAL}/StructureDefinition/ai-service-read-audit"
PROFILE_CHANGE_CONTROL_AUDIT = f"{CANONICAL}/StructureDefinition/ai-change-control-audit"
PROFILE_USER_AUTHENTICATION_AUDIT = f"{CANONICAL}/StructureDefinition/user-authentication-audit"
GOVERNANCE_EVENT_SYSTEM = f"{CANONICAL}/CodeSystem/ai-governance-event"
DELIVERY_TAG_SYSTEM = f"{CANONICAL}/CodeSystem/delivery-key"
URI = "urn:ietf:rfc:3986"

AI_ROLE = {
    "system": "http://hl7.org/fhir/uv/aitransparency/CodeSystem/AIdeviceTypeCS",
    "code": "Artificial-Intelligence",
}
PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"
DATA_OPERATION = "http://terminology.hl7.org/CodeSystem/v3-DataOperation"
TREAT = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "code": "TREAT",
    "display": "treatment",
}
DCM = "http://dicom.nema.org/resources/ontology/DCM"
TERMINOLOGY = "http://terminology.hl7.org/CodeSystem"


def validated(model: type[FHIRResourceModel], data: dict) -> dict:
    """Validate with fhir.resources (R4B = R4-compatible); raises ValidationError if ``data`` is not.

    The builders already produce JSON-ready values, so ``data`` itself is returned: dumping the
    model back out would double the cost of every write-back for an identical result.
    """
    model.model_validate(data)
    return data


def instant(moment: datetime) -> str:
    """FHIR instant in UTC; a naive time (SQLite drops the zone) is taken as the UTC it was stored in."""
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def participant(code: str, display: str) -> dict:
    return {"coding": [{"system": PARTICIPANT, "code": code, "display": display}]}


def ai_reason() -> list[dict]:
    return [{"coding": [dict(AIAST)]}, {"coding": [dict(TREAT)]}]


def ai_author(device_ref: str) -> dict:
    return {
        "type": participant("author", "Author"),
        "role": [{"coding": [dict(AI_ROLE)]}],
        "who": {"reference": device_ref},
    }


def audit_entity(type_code: str, type_display: str, role_code: str, role_display: str) -> dict:
    """An AuditEvent entity's type and role codings (audit-entity-type, object-role)."""
    return {
        "type": {"system": f"{TERMINOLOGY}/audit-entity-type", "code": type_code, "display": type_display},
        "role": {"system": f"{TERMINOLOGY}/object-role", "code": role_code, "display": role_display},
    }


def patient_entity(patient_id: str) -> dict:
    """BALP: the patient as an AuditEvent entity whenever known."""
    return {"what": {"reference": f"Patient/{patient_id}"}, **audit_entity("1", "Person", "1", "Patient")}
