"""A clinician's decision on a card: AI-Provenance of an accepted change, or a rejected Task."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fhir.resources.R4B.provenance import Provenance
from fhir.resources.R4B.task import Task

from fhir_profiles.ai_output import CardSetFacts
from fhir_profiles.common import (
    DATA_OPERATION,
    PROFILE_AI_PROVENANCE,
    PROFILE_OVERRIDE_TASK,
    TREAT,
    URI,
    ai_author,
    ai_reason,
    instant,
    participant,
    validated,
)

OPERATION_BY_ACTION = {
    "create": ("CREATE", "create"),
    "update": ("UPDATE", "revise"),
    "delete": ("DELETE", "delete"),
}


@dataclass(frozen=True)
class DecisionFacts:
    card_uuid: str
    outcome: str
    decided_at: datetime
    accepted_suggestions: tuple[str, ...] = ()
    reason: dict | None = None
    comment: str | None = None


def acceptance_provenance(
    facts: CardSetFacts, decision: DecisionFacts, target_ref: str, action_type: str, request_group_ref: str
) -> dict:
    """The AI authored the change, the clinician verified it (the IG's human-in-the-loop pattern)."""
    code, display = OPERATION_BY_ACTION[action_type]
    suggestion = ", ".join(decision.accepted_suggestions)
    return validated(
        Provenance,
        {
            "resourceType": "Provenance",
            "meta": {"profile": [PROFILE_AI_PROVENANCE]},
            "target": [{"reference": target_ref}],
            "occurredDateTime": instant(decision.decided_at),
            "recorded": instant(decision.decided_at),
            "reason": ai_reason(),
            "activity": {
                "coding": [{"system": DATA_OPERATION, "code": code, "display": display}],
                "text": f"Clinician accepted AI suggestion {suggestion} (feedback outcome=accepted)",
            },
            "agent": [
                {"type": participant("verifier", "Verifier"), "who": {"reference": facts.user_id}},
                ai_author(facts.device_ref),
            ],
            "entity": [
                {"role": "derivation", "what": {"reference": request_group_ref}},
                {"role": "source", "what": {"reference": f"Patient/{facts.patient_id}"}},
            ],
        },
    )


def override_task(facts: CardSetFacts, decision: DecisionFacts, request_group_ref: str) -> dict:
    """The clinician's review of the card, rejected, with the reason they gave (reference §1(d))."""
    data: dict = {
        "resourceType": "Task",
        "meta": {"profile": [PROFILE_OVERRIDE_TASK]},
        "identifier": [{"system": URI, "value": f"urn:uuid:{decision.card_uuid}"}],
        "status": "rejected",
        "businessStatus": {"text": "overridden"},
        "intent": "proposal",
        "code": {
            "coding": [
                {
                    "system": "http://hl7.org/fhir/CodeSystem/task-code",
                    "code": "approve",
                    "display": "Activate/approve the focal resource",
                }
            ]
        },
        "description": f"Clinician review of AI suggestion (CDS Hooks card {decision.card_uuid})",
        "focus": {"reference": request_group_ref},
        "for": {"reference": f"Patient/{facts.patient_id}"},
        "authoredOn": instant(facts.issued_at),
        "lastModified": instant(decision.decided_at),
        "requester": {"reference": facts.device_ref},
        "owner": {"reference": facts.user_id},
        "input": [{"type": {"text": "cds-hooks-card-uuid"}, "valueString": decision.card_uuid}],
    }
    if decision.reason:
        data["statusReason"] = {"coding": [decision.reason]}
    if decision.comment:
        data["note"] = [
            {
                "authorReference": {"reference": facts.user_id},
                "time": instant(decision.decided_at),
                "text": decision.comment,
            }
        ]
    if facts.encounter_id:
        data["encounter"] = {"reference": f"Encounter/{facts.encounter_id}"}
    return validated(Task, data)


def override_provenance(
    facts: CardSetFacts, decision: DecisionFacts, task_ref: str, request_group_ref: str
) -> dict:
    """A human decision, not AI-asserted content: the clinician is the author (base Provenance)."""
    reason = [{"coding": [decision.reason]}] if decision.reason else [{"coding": [dict(TREAT)]}]
    return validated(
        Provenance,
        {
            "resourceType": "Provenance",
            "target": [{"reference": task_ref}],
            "occurredDateTime": instant(decision.decided_at),
            "recorded": instant(decision.decided_at),
            "reason": reason,
            "activity": {
                "coding": [{"system": DATA_OPERATION, "code": "UPDATE", "display": "revise"}],
                "text": "Clinician overrode AI suggestion (CDS Hooks feedback outcome=overridden)",
            },
            "agent": [{"type": participant("author", "Author"), "who": {"reference": facts.user_id}}],
            "entity": [
                {"role": "source", "what": {"reference": request_group_ref}},
                {"role": "source", "what": {"reference": f"Patient/{facts.patient_id}"}},
            ],
        },
    )
