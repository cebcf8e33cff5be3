"""Model change control in FHIR: the E9 AuditEvent and the Provenance of the model version.

Shaped on reference §2.17-2.18: DCM 110113 Security Alert / 110131 Software Configuration with a
governance subtype, the approver as the requesting human user, the model's Device as the entity.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fhir.resources.R4B.auditevent import AuditEvent
from fhir.resources.R4B.provenance import Provenance

from fhir_profiles.common import (
    DATA_OPERATION,
    DCM,
    GOVERNANCE_EVENT_SYSTEM,
    PROFILE_CHANGE_CONTROL_AUDIT,
    TERMINOLOGY,
    audit_entity,
    instant,
    participant,
    validated,
)

SUBTYPE_BY_STATUS = {
    "active": ("model-version-activated", "AI model version activated"),
    "shadow": ("model-version-shadowed", "AI model version put in shadow mode"),
    "paused": ("model-version-paused", "AI model version paused"),
    "retired": ("model-version-retired", "AI model version retired"),
}


@dataclass(frozen=True)
class ModelChangeFacts:
    model_label: str
    device_ref: str
    service_ref: str
    previous_status: str
    status: str
    approver: str
    role: str
    reason: str
    changed_at: datetime


def change_control_audit_event(change: ModelChangeFacts) -> dict:
    code, display = SUBTYPE_BY_STATUS[change.status]
    summary = f"{change.model_label}: {change.previous_status} -> {change.status}. {change.reason}"
    return validated(
        AuditEvent,
        {
            "resourceType": "AuditEvent",
            "meta": {"profile": [PROFILE_CHANGE_CONTROL_AUDIT]},
            "type": {"system": DCM, "code": "110113", "display": "Security Alert"},
            "subtype": [
                {"system": DCM, "code": "110131", "display": "Software Configuration"},
                {"system": GOVERNANCE_EVENT_SYSTEM, "code": code, "display": display},
            ],
            "action": "U",
            "recorded": instant(change.changed_at),
            "outcome": "0",
            "outcomeDesc": summary,
            "purposeOfEvent": [{"coding": [{"system": f"{TERMINOLOGY}/v3-ActReason", "code": "HOPERAT"}]}],
            "agent": [
                {
                    "type": {
                        "coding": [
                            {
                                "system": f"{TERMINOLOGY}/extra-security-role-type",
                                "code": "humanuser",
                                "display": "human user",
                            }
                        ]
                    },
                    "who": {"reference": change.approver},
                    "role": [{"text": change.role}],
                    "requestor": True,
                },
                {
                    "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
                    "who": {"reference": change.service_ref},
                    "requestor": False,
                },
            ],
            "source": {
                "observer": {"reference": change.service_ref},
                "type": [
                    {
                        "system": f"{TERMINOLOGY}/security-source-type",
                        "code": "4",
                        "display": "Application Server",
                    }
                ],
            },
            "entity": [
                {
                    "what": {"reference": change.device_ref},
                    **audit_entity("2", "System Object", "4", "Domain Resource"),
                    "detail": [{"type": "previous-status", "valueString": change.previous_status}],
                }
            ],
        },
    )


def change_provenance(change: ModelChangeFacts) -> dict:
    """The approver attests the model version's new status (reason METAMGT, text = the reason)."""
    return validated(
        Provenance,
        {
            "resourceType": "Provenance",
            "target": [{"reference": change.device_ref}],
            "occurredDateTime": instant(change.changed_at),
            "recorded": instant(change.changed_at),
            "reason": [
                {
                    "coding": [
                        {
                            "system": f"{TERMINOLOGY}/v3-ActReason",
                            "code": "METAMGT",
                            "display": "metadata management",
                        }
                    ],
                    "text": change.reason,
                }
            ],
            "activity": {
                "coding": [{"system": DATA_OPERATION, "code": "UPDATE", "display": "revise"}],
                "text": f"{change.model_label}: {change.previous_status} -> {change.status}",
            },
            "agent": [{"type": participant("attester", "Attester"), "who": {"reference": change.approver}}],
        },
    )
