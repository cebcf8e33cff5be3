"""The AI output of one hook call: GuidanceResponse + RequestGroup, and its AI-Provenance.

Mapping per the CDS Hooks Clinical Reasoning IG (reference §1(b)); AI specifics per the AI
Transparency IG: AIAST labels, the model-version Device as performer/author, AIconfidence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fhir.resources.R4B.guidanceresponse import GuidanceResponse
from fhir.resources.R4B.provenance import Provenance
from fhir.resources.R4B.requestgroup import RequestGroup

from fhir_profiles.common import (
    DATA_OPERATION,
    PROFILE_AI_PROVENANCE,
    PROFILE_REQUEST_GROUP,
    URI,
    ai_author,
    ai_reason,
    instant,
    validated,
)
from fhir_profiles.security_labels import AIAST

PRIORITY_BY_INDICATOR = {"info": "routine", "warning": "urgent", "critical": "stat"}
ACTION_TYPE = {"create": "create", "update": "update", "delete": "remove"}
AI_CONFIDENCE = "http://hl7.org/fhir/uv/aitransparency/StructureDefinition/AIconfidence"


@dataclass(frozen=True)
class CardSetFacts:
    """What was recorded about one response: enough to describe it in FHIR without re-running it."""

    key: str
    hook_instance: str
    hook: str
    service_url: str
    patient_id: str
    encounter_id: str | None
    user_id: str
    device_ref: str
    service_ref: str
    model_version: str
    issued_at: datetime
    input_refs: tuple[str, ...]
    cards: tuple[dict, ...]
    fetched_prefetch_keys: tuple[str, ...] = ()


def _context(facts: CardSetFacts) -> dict:
    context: dict = {"subject": {"reference": f"Patient/{facts.patient_id}"}}
    if facts.encounter_id:
        context["encounter"] = {"reference": f"Encounter/{facts.encounter_id}"}
    return context


def guidance_response(facts: CardSetFacts, request_group_ref: str) -> dict:
    """The IG's mapping without its ``cdshooksguidanceresponse`` claim: that profile requires the
    ``cqf-cdsHooksEndpoint`` extension, which FHIR R4 defines for PlanDefinition only, so HAPI FHIR
    (and the HL7 validator) refuse it on a GuidanceResponse. The endpoint is in ``moduleUri``."""
    return validated(
        GuidanceResponse,
        {
            "resourceType": "GuidanceResponse",
            "meta": {"security": [dict(AIAST)]},
            "requestIdentifier": {"system": URI, "value": f"urn:uuid:{facts.hook_instance}"},
            "identifier": [{"system": URI, "value": f"urn:uuid:{facts.key}"}],
            "moduleUri": facts.service_url,
            "status": "success",
            **_context(facts),
            "occurrenceDateTime": instant(facts.issued_at),
            "performer": {"reference": facts.device_ref},
            **({"result": {"reference": request_group_ref}} if facts.cards else {}),
        },
    )


def request_group(facts: CardSetFacts) -> dict:
    contained: list[dict] = []
    actions = [_card_action(card, contained) for card in facts.cards]
    priorities = [PRIORITY_BY_INDICATOR[card["indicator"]] for card in facts.cards]
    data: dict = {
        "resourceType": "RequestGroup",
        "meta": {"profile": [PROFILE_REQUEST_GROUP], "security": [dict(AIAST)]},
        "identifier": [{"system": URI, "value": f"urn:uuid:{facts.key}"}],
        "instantiatesUri": [facts.service_url],
        "status": "active",
        "intent": "proposal",
        **_context(facts),
        "authoredOn": instant(facts.issued_at),
        "author": {"reference": facts.device_ref},
    }
    if priorities:
        data["priority"] = min(priorities, key=["stat", "urgent", "routine"].index)
    if contained:
        data["contained"] = contained
    if actions:
        data["action"] = actions
    return validated(RequestGroup, data)


def _card_action(card: dict, contained: list[dict]) -> dict:
    action: dict = {
        "id": card["uuid"],
        "title": card["summary"],
        "description": card.get("detail", card["summary"]),
        "priority": PRIORITY_BY_INDICATOR[card["indicator"]],
        "documentation": [
            {"type": "documentation", "label": card["source"]["label"], "url": card["source"].get("url")}
        ],
    }
    confidence = card.get("extension", {}).get("health.countersign.ai", {}).get("confidence")
    if confidence is not None:
        action["extension"] = [{"url": AI_CONFIDENCE, "valueDecimal": confidence}]
    suggestions = card.get("suggestions", [])
    if suggestions:
        action["selectionBehavior"] = card["selectionBehavior"]
        action["action"] = [_suggestion_action(s, contained) for s in suggestions]
    return action


def _suggestion_action(suggestion: dict, contained: list[dict]) -> dict:
    """Proposed resources become contained; their labels go (dom-5: the container carries AIAST)."""
    steps = []
    for index, step in enumerate(suggestion.get("actions", [])):
        rendered: dict = {
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/action-type",
                        "code": ACTION_TYPE[step["type"]],
                    }
                ]
            },
            "description": step["description"],
        }
        if step["type"] == "delete":
            rendered["resource"] = {"reference": step["resourceId"]}
        else:
            local_id = f"s{suggestion['uuid'][:8]}-{index}"
            proposal = {key: value for key, value in step["resource"].items() if key != "meta"}
            contained.append({**proposal, "id": local_id})
            rendered["resource"] = {"reference": f"#{local_id}"}
        steps.append(rendered)
    action: dict = {"id": suggestion["uuid"], "title": suggestion["label"], "selectionBehavior": "all"}
    if steps:
        action["action"] = steps
    return action


def ai_output_provenance(facts: CardSetFacts, request_group_ref: str, guidance_ref: str) -> dict:
    """Who produced the cards (the AI Device, author) and from which inputs (entity source)."""
    targets = [{"reference": guidance_ref}]
    if facts.cards:
        targets.insert(0, {"reference": request_group_ref})
    inputs = sorted({f"Patient/{facts.patient_id}", *facts.input_refs})
    return validated(
        Provenance,
        {
            "resourceType": "Provenance",
            "meta": {"profile": [PROFILE_AI_PROVENANCE]},
            "target": targets,
            "occurredDateTime": instant(facts.issued_at),
            "recorded": instant(facts.issued_at),
            "reason": ai_reason(),
            "activity": {
                "coding": [{"system": DATA_OPERATION, "code": "CREATE", "display": "create"}],
                "text": f"AI inference (CDS Hooks {facts.hook})",
            },
            "agent": [ai_author(facts.device_ref)],
            "entity": [{"role": "source", "what": {"reference": ref}} for ref in inputs],
        },
    )
