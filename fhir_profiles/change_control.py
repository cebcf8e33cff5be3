"""Model change control in FHIR: the E9 AuditEvents and the Provenance of each change.

Shaped on reference §2.17-2.18: DCM 110113 Security Alert / 110131 Software Configuration with a
governance subtype, the governor as the requesting human user, the model version's Device as the
entity. Two kinds of record: a version's status change (``change_control_audit_event``,
``change_provenance``) and an act of a promotion, proposed by one governor and approved by another,
or rolled back by one (``promotion_audit_event``, ``promotion_provenance``).
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
#: The governance code of each promotion act (docs/DECISIONS.md, "Model versions written back").
SUBTYPE_BY_ACT = {
    "propose": ("model-promotion-proposed", "AI model version proposed for active"),
    "approve": ("model-promotion-approved", "AI model version promotion approved"),
    "withdraw": ("model-promotion-withdrawn", "AI model version promotion withdrawn"),
    "rollback": ("model-version-rolled-back", "AI model version rolled back"),
}
#: What each act's two versions are to it: (``model_version``, ``from_version``).
VERSION_PARTS = {
    "propose": ("candidate version, proposed for active", "active version it would replace"),
    "approve": ("candidate version, now active", "version it replaced, now retired"),
    "withdraw": ("candidate version of the withdrawn proposal", "active version it would have replaced"),
    "rollback": ("version rolled back, now retired", "version restored to active"),
}
#: The governor's part in the act's Provenance.
AGENT_BY_ACT = {
    "propose": ("author", "Author"),
    "approve": ("attester", "Attester"),
    "withdraw": ("author", "Author"),
    "rollback": ("author", "Author"),
}
HOPERAT = [{"coding": [{"system": f"{TERMINOLOGY}/v3-ActReason", "code": "HOPERAT"}]}]


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
    approver_name: str | None = None


@dataclass(frozen=True)
class PromotionFacts:
    """One act of ``app.governance.promotion``: ``model_version`` is the candidate (propose,
    approve, withdraw) or the version rolled back; ``from_version`` the version it replaces (or
    would have), or the one a rollback restores."""

    act: str
    model_name: str
    model_id: str
    model_version: str
    device_ref: str
    service_ref: str
    governor: str
    role: str
    reason: str
    at: datetime
    from_version: str | None = None
    from_device_ref: str | None = None
    proposal: int | None = None
    governor_name: str | None = None

    @property
    def summary(self) -> str:
        """One line, ids and versions only: the AuditEvent's outcomeDesc and the Provenance's activity."""
        replaced = self.from_version or "no active version"
        proposal = f"proposal #{self.proposal}" if self.proposal is not None else "proposal"
        return {
            "propose": f"{self.model_name} {self.model_version} proposed for active, to replace {replaced}",
            "approve": f"{self.model_name} {self.model_version} approved for active ({proposal}), "
            f"replacing {replaced}",
            "withdraw": f"{proposal} of {self.model_name} {self.model_version} for active withdrawn",
            "rollback": f"{self.model_name} rolled back from {self.model_version} to {replaced}",
        }[self.act]


def change_control_audit_event(change: ModelChangeFacts) -> dict:
    code, display = SUBTYPE_BY_STATUS[change.status]
    summary = f"{change.model_label}: {change.previous_status} -> {change.status}. {change.reason}"
    entity = {
        "what": {"reference": change.device_ref},
        **audit_entity("2", "System Object", "4", "Domain Resource"),
        "detail": [{"type": "previous-status", "valueString": change.previous_status}],
    }
    agent = _governor_agent(change.approver, change.role, change.approver_name)
    return _change_control_event(
        code, display, change.changed_at, summary, agent, change.service_ref, [entity]
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
            "reason": _metamgt(change.reason),
            "activity": {
                "coding": [{"system": DATA_OPERATION, "code": "UPDATE", "display": "revise"}],
                "text": f"{change.model_label}: {change.previous_status} -> {change.status}",
            },
            "agent": [{"type": participant("attester", "Attester"), "who": {"reference": change.approver}}],
        },
    )


def promotion_audit_event(act: PromotionFacts) -> dict:
    """E9 of one promotion act: the governor as requestor, the candidate's (or rolled-back) Device
    and, when the act names one, the other version's Device as entities; the reason in outcomeDesc."""
    code, display = SUBTYPE_BY_ACT[act.act]
    own, other = VERSION_PARTS[act.act]
    entities = [_version_entity(act.device_ref, act.model_id, act.model_version, own, act.proposal)]
    if act.from_device_ref is not None and act.from_version is not None:
        entities.append(_version_entity(act.from_device_ref, act.model_id, act.from_version, other))
    agent = _governor_agent(act.governor, act.role, act.governor_name)
    outcome = f"{act.summary}. {act.reason}"
    return _change_control_event(code, display, act.at, outcome, agent, act.service_ref, entities)


def promotion_provenance(act: PromotionFacts, audit_event_ref: str) -> dict:
    """The governor's act, on its AuditEvent and the versions' Devices: author of a proposal, a
    withdrawal or a rollback, attester of an approval (reason METAMGT, text = the reason)."""
    code, display = SUBTYPE_BY_ACT[act.act]
    targets = [audit_event_ref, act.device_ref, *([act.from_device_ref] if act.from_device_ref else [])]
    agent_code, agent_display = AGENT_BY_ACT[act.act]
    return validated(
        Provenance,
        {
            "resourceType": "Provenance",
            "target": [{"reference": target} for target in targets],
            "occurredDateTime": instant(act.at),
            "recorded": instant(act.at),
            "reason": _metamgt(act.reason),
            "activity": {
                "coding": [{"system": GOVERNANCE_EVENT_SYSTEM, "code": code, "display": display}],
                "text": act.summary,
            },
            "agent": [
                {
                    "type": participant(agent_code, agent_display),
                    "role": [{"text": act.role}],
                    "who": {"reference": act.governor},
                }
            ],
        },
    )


def _change_control_event(
    code: str,
    display: str,
    when: datetime,
    outcome: str,
    governor: dict,
    service_ref: str,
    entities: list[dict],
) -> dict:
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
            "recorded": instant(when),
            "outcome": "0",
            "outcomeDesc": outcome,
            "purposeOfEvent": HOPERAT,
            "agent": [
                governor,
                {
                    "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
                    "who": {"reference": service_ref},
                    "requestor": False,
                },
            ],
            "source": {
                "observer": {"reference": service_ref},
                "type": [
                    {
                        "system": f"{TERMINOLOGY}/security-source-type",
                        "code": "4",
                        "display": "Application Server",
                    }
                ],
            },
            "entity": entities,
        },
    )


def _governor_agent(reference: str, role: str, name: str | None) -> dict:
    agent = {
        "type": {
            "coding": [
                {
                    "system": f"{TERMINOLOGY}/extra-security-role-type",
                    "code": "humanuser",
                    "display": "human user",
                }
            ]
        },
        "who": {"reference": reference},
        "role": [{"text": role}],
        "requestor": True,
    }
    return agent | ({"name": name} if name else {})


def _version_entity(
    device_ref: str, model_id: str, version: str, part: str, proposal: int | None = None
) -> dict:
    detail = [{"type": "model-version", "valueString": f"{model_id}-{version}"}]
    if proposal is not None:
        detail.append({"type": "proposal", "valueString": str(proposal)})
    return {
        "what": {"reference": device_ref},
        **audit_entity("2", "System Object", "4", "Domain Resource"),
        "description": part,
        "detail": detail,
    }


def _metamgt(reason: str) -> list[dict]:
    coding = {"system": f"{TERMINOLOGY}/v3-ActReason", "code": "METAMGT", "display": "metadata management"}
    return [{"coding": [coding], "text": reason}]
