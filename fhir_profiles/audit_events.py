"""AuditEvents shaped on IHE BALP and the local profiles of reference §1(e).

Minimal by design: references and hashes, never clinical content, never a token.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

import orjson
from fhir.resources.R4B.auditevent import AuditEvent

from fhir_profiles.ai_output import CardSetFacts
from fhir_profiles.common import (
    AI_ROLE,
    CANONICAL,
    DCM,
    GOVERNANCE_EVENT_SYSTEM,
    PROFILE_CDS_CALL_AUDIT,
    PROFILE_SERVICE_READ_AUDIT,
    PROFILE_USER_AUTHENTICATION_AUDIT,
    PROFILE_WRITE_BACK_AUDIT,
    TERMINOLOGY,
    TREAT,
    URI,
    audit_entity,
    instant,
    patient_entity,
    validated,
)

BALP_AGENT_TYPES = "https://profiles.ihe.net/ITI/BALP/CodeSystem/UserAgentTypes"
SESSION_SYSTEM = f"{CANONICAL}/NamingSystem/smart-session"
#: DICOM event type codes of a User Authentication (DCM 110114) event.
AUTHENTICATION_SUBTYPES = {"login": ("110122", "Login"), "logout": ("110123", "Logout")}
#: A shadow version's run on a hook call: recorded, never shown (docs/DECISIONS.md).
SHADOW_SUBTYPE = {
    "system": GOVERNANCE_EVENT_SYSTEM,
    "code": "shadow",
    "display": "Shadow run: output recorded, never shown",
}
HOPERAT = {
    "system": f"{TERMINOLOGY}/v3-ActReason",
    "code": "HOPERAT",
    "display": "healthcare operations",
}


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


def hook_call_audit_event(facts: CardSetFacts, guidance_ref: str | None, *, shadow: bool = False) -> dict:
    """E1: the CDS Hooks call, with a redacted query (ids only) and the output it produced.

    With ``shadow``, a shadow version's run on the call (subtype ``shadow`` as well): its output was
    recorded by Countersign and never shown, so there is no GuidanceResponse and no clinician as
    information recipient; the service ran it (requestor) and the cards it would have shown are
    counted on an output entity that names the card set by its uuid.
    """
    query = {"hook": facts.hook, "hookInstance": facts.hook_instance, "patientId": facts.patient_id}
    service = {
        "type": {"coding": [_dcm("110152", "Destination Role ID")]},
        "who": {"reference": facts.service_ref},
        "requestor": shadow,
        "network": {"address": facts.service_url, "type": "5"},
    }
    user = {
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
    }
    model = {
        "type": {"coding": [_dcm("110150", "Application")]},
        "role": [{"coding": [dict(AI_ROLE)]}],
        "who": {"reference": facts.device_ref},
        "requestor": False,
    }
    subtypes = [
        {
            "system": GOVERNANCE_EVENT_SYSTEM,
            "code": "cds-hooks-service-call",
            "display": "CDS Hooks service call",
        }
    ]
    return validated(
        AuditEvent,
        {
            "resourceType": "AuditEvent",
            "meta": {"profile": [PROFILE_CDS_CALL_AUDIT]},
            "type": _dcm("110112", "Query"),
            "subtype": [*subtypes, SHADOW_SUBTYPE] if shadow else subtypes,
            "action": "E",
            "recorded": instant(facts.issued_at),
            "outcome": "0",
            "purposeOfEvent": [{"coding": [dict(HOPERAT if shadow else TREAT)]}],
            "agent": [service, model] if shadow else [service, user, model],
            "source": _source(facts.service_ref),
            "entity": [
                patient_entity(facts.patient_id),
                {
                    **audit_entity("2", "System Object", "24", "Query"),
                    "description": f"{facts.hook} call {facts.hook_instance}; prefetch not recorded",
                    "query": base64.b64encode(orjson.dumps(query)).decode(),
                    "detail": [{"type": "hookInstance", "valueString": facts.hook_instance}],
                },
                _shadow_output(facts) if shadow else _shown_output(facts, guidance_ref),
            ],
        },
    )


def _shown_output(facts: CardSetFacts, guidance_ref: str | None) -> dict:
    if guidance_ref is None:
        raise ValueError("a call whose output was shown names its GuidanceResponse")
    return {
        "what": {"reference": guidance_ref},
        **audit_entity("2", "System Object", "3", "Report"),
        "detail": [
            {"type": "cards-returned", "valueString": str(len(facts.cards))},
            {"type": "model-version", "valueString": facts.model_version},
        ],
    }


def _shadow_output(facts: CardSetFacts) -> dict:
    """What the shadow version would have shown: kept in Countersign's record, not in the EHR."""
    return {
        "what": {
            "identifier": {"system": URI, "value": f"urn:uuid:{facts.key}"},
            "display": "shadow card set, recorded by Countersign and never shown",
        },
        **audit_entity("2", "System Object", "3", "Report"),
        "detail": [
            {"type": "cards-not-shown", "valueString": str(len(facts.cards))},
            {"type": "model-version", "valueString": facts.model_version},
        ],
    }


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


@dataclass(frozen=True)
class Authentication:
    """A sign-in to or sign-out from the SMART app as recorded: ``reason`` is a refused sign-in's
    class or why a session ended; ``session`` a prefix of the session key, never a token."""

    action: str
    occurred_at: datetime
    app_ref: str
    refused: bool = False
    reason: str | None = None
    user_ref: str | None = None
    role: str | None = None
    ehr: str | None = None
    session: str | None = None


def user_authentication_audit_event(auth: Authentication) -> dict:
    """DICOM/ATNA User Authentication (DCM 110114, Login 110122 / Logout 110123, action E), with
    BALP's agent types for an OAuth user and authorization server; a refused sign-in is outcome 4."""
    code, display = AUTHENTICATION_SUBTYPES[auth.action]
    event = {
        "resourceType": "AuditEvent",
        "meta": {"profile": [PROFILE_USER_AUTHENTICATION_AUDIT]},
        "type": _dcm("110114", "User Authentication"),
        "subtype": [_dcm(code, display)],
        "action": "E",
        "recorded": instant(auth.occurred_at),
        "outcome": "4" if auth.refused else "0",
        "agent": _authentication_agents(auth),
        "source": _source(auth.app_ref),
    }
    if auth.refused:
        event["outcomeDesc"] = auth.reason
    if auth.session:
        event["entity"] = [_session_entity(auth.session, None if auth.refused else auth.reason)]
    return validated(AuditEvent, event)


def _authentication_agents(auth: Authentication) -> list[dict]:
    """The user (when known), Countersign's app, and the EHR that authenticated the user."""
    agents = [
        {
            "type": {"coding": [_dcm("110150", "Application")]},
            "who": {"reference": auth.app_ref},
            "requestor": False,
        }
    ]
    if auth.user_ref:
        user = {
            "type": {"coding": [{"system": BALP_AGENT_TYPES, "code": "UserOauthAgent"}]},
            "who": {"reference": auth.user_ref},
            "requestor": True,
        }
        agents.insert(0, user | ({"role": [{"text": auth.role}]} if auth.role else {}))
    if auth.ehr:
        agents.append(
            {
                "type": {"coding": [{"system": BALP_AGENT_TYPES, "code": "AuthzOauthService"}]},
                "who": {"identifier": {"system": URI, "value": auth.ehr}},
                "requestor": False,
                "network": {"address": auth.ehr, "type": "5"},
            }
        )
    return agents


def _session_entity(session: str, reason: str | None) -> dict:
    entity = {
        "what": {"identifier": {"system": SESSION_SYSTEM, "value": session}},
        **audit_entity("2", "System Object", "13", "Security Resource"),
    }
    return entity | ({"detail": [{"type": "reason", "valueString": reason}]} if reason else {})
