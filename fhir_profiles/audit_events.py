"""AuditEvents shaped on IHE BALP and the local profiles of reference §1(e).

Minimal by design: references and hashes, never clinical content.
"""

from __future__ import annotations

import base64
from datetime import datetime

import orjson
from fhir.resources.R4B.auditevent import AuditEvent

from fhir_profiles.ai_output import CardSetFacts
from fhir_profiles.common import (
    AI_ROLE,
    DCM,
    GOVERNANCE_EVENT_SYSTEM,
    PROFILE_CDS_CALL_AUDIT,
    PROFILE_SERVICE_READ_AUDIT,
    PROFILE_WRITE_BACK_AUDIT,
    TERMINOLOGY,
    TREAT,
    audit_entity,
    instant,
    patient_entity,
    validated,
)


def _dcm(code: str, display: str) -> dict:
    return {"system": DCM, "code": code, "display": display}


def _source(service_ref: str) -> dict:
    return {
        "observer": {"reference": service_ref},
        "type": [
            {
                "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                "code": "4",
                "display": "Application Server",
            }
        ],
    }


def hook_call_audit_event(facts: CardSetFacts, guidance_ref: str) -> dict:
    """E1: the CDS Hooks call, with a redacted query (ids only) and the output it produced."""
    query = {"hook": facts.hook, "hookInstance": facts.hook_instance, "patientId": facts.patient_id}
    return validated(
        AuditEvent,
        {
            "resourceType": "AuditEvent",
            "meta": {"profile": [PROFILE_CDS_CALL_AUDIT]},
            "type": _dcm("110112", "Query"),
            "subtype": [
                {
                    "system": GOVERNANCE_EVENT_SYSTEM,
                    "code": "cds-hooks-service-call",
                    "display": "CDS Hooks service call",
                }
            ],
            "action": "E",
            "recorded": instant(facts.issued_at),
            "outcome": "0",
            "purposeOfEvent": [{"coding": [dict(TREAT)]}],
            "agent": [
                {
                    "type": {"coding": [_dcm("110152", "Destination Role ID")]},
                    "who": {"reference": facts.service_ref},
                    "requestor": False,
                    "network": {"address": facts.service_url, "type": "5"},
                },
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "IRCP",
                                "display": "information recipient",
                            }
                        ]
                    },
                    "who": {"reference": facts.user_id},
                    "requestor": True,
                },
                {
                    "type": {"coding": [_dcm("110150", "Application")]},
                    "role": [{"coding": [dict(AI_ROLE)]}],
                    "who": {"reference": facts.device_ref},
                    "requestor": False,
                },
            ],
            "source": _source(facts.service_ref),
            "entity": [
                patient_entity(facts.patient_id),
                {
                    **audit_entity("2", "System Object", "24", "Query"),
                    "description": f"{facts.hook} call {facts.hook_instance}; prefetch not recorded",
                    "query": base64.b64encode(orjson.dumps(query)).decode(),
                    "detail": [{"type": "hookInstance", "valueString": facts.hook_instance}],
                },
                {
                    "what": {"reference": guidance_ref},
                    **audit_entity("2", "System Object", "3", "Report"),
                    "detail": [
                        {"type": "cards-returned", "valueString": str(len(facts.cards))},
                        {"type": "model-version", "valueString": facts.model_version},
                    ],
                },
            ],
        },
    )


def write_back_audit_event(
    patient_id: str, written_ref: str, user_id: str, when: datetime, service_ref: str
) -> dict:
    """E5: our write of a Provenance or Task recording a clinician's decision (BALP PatientCreate)."""
    return validated(
        AuditEvent,
        {
            "resourceType": "AuditEvent",
            "meta": {"profile": [PROFILE_WRITE_BACK_AUDIT]},
            "type": {
                "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                "code": "rest",
                "display": "Restful Operation",
            },
            "subtype": [
                {"system": "http://hl7.org/fhir/restful-interaction", "code": "create", "display": "create"}
            ],
            "action": "C",
            "recorded": instant(when),
            "outcome": "0",
            "purposeOfEvent": [{"coding": [dict(TREAT)]}],
            "agent": [
                {
                    "type": {"coding": [_dcm("110153", "Source Role ID")]},
                    "who": {"reference": service_ref},
                    "requestor": False,
                },
                {
                    "type": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "AUT",
                                "display": "author",
                            }
                        ]
                    },
                    "who": {"reference": user_id},
                    "requestor": True,
                },
            ],
            "source": _source(service_ref),
            "entity": [
                patient_entity(patient_id),
                {
                    "what": {"reference": written_ref},
                    **audit_entity("2", "System Object", "4", "Domain Resource"),
                },
            ],
        },
    )


def service_read_audit_event(facts: CardSetFacts, prefetch_key: str) -> dict:
    """E3: a prefetch query the service ran itself on the EHR's FHIR server (BALP PatientQuery)."""
    return validated(
        AuditEvent,
        {
            "resourceType": "AuditEvent",
            "meta": {"profile": [PROFILE_SERVICE_READ_AUDIT]},
            "type": {
                "system": f"{TERMINOLOGY}/audit-event-type",
                "code": "rest",
                "display": "Restful Operation",
            },
            "subtype": [
                {
                    "system": "http://hl7.org/fhir/restful-interaction",
                    "code": "search-type",
                    "display": "search type",
                }
            ],
            "action": "E",
            "recorded": instant(facts.issued_at),
            "outcome": "0",
            "purposeOfEvent": [{"coding": [dict(TREAT)]}],
            "agent": [
                {
                    "type": {"coding": [_dcm("110153", "Source Role ID")]},
                    "who": {"reference": facts.service_ref},
                    "requestor": True,
                },
                {
                    "type": {
                        "coding": [
                            {
                                "system": f"{TERMINOLOGY}/v3-ParticipationType",
                                "code": "IRCP",
                                "display": "information recipient",
                            }
                        ]
                    },
                    "who": {"reference": facts.user_id},
                    "requestor": False,
                },
            ],
            "source": _source(facts.service_ref),
            "entity": [
                patient_entity(facts.patient_id),
                {
                    **audit_entity("2", "System Object", "24", "Query"),
                    "description": f"prefetch {prefetch_key} of {facts.hook} call {facts.hook_instance}",
                },
            ],
        },
    )
