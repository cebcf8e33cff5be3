"""The guardrail pipeline every engine's output passes through, in one place for all services.

Order matters and is fixed: the intended use decides whether the model runs at all; then each
piece of advice must be grounded in the input, propose only valid FHIR, and clear the model's
confidence floor; low-confidence advice is downgraded to a review prompt; a card the same
clinician overrode for the same patient recently is not repeated; the card count is capped; and
for a high-risk model, proposals that create records are held for review and signature.
Every piece of advice removed is kept as a guardrail event in the record.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from app.engines.base import PatientData
from app.governance.policy import Policy
from cds_hooks.advice import Advice, AdviceSet

LOW_CONFIDENCE_NOTE = (
    "\n\n**Low confidence.** This suggestion is below the model's confidence threshold: "
    "review it as a prompt, not a recommendation."
)


@dataclass(frozen=True)
class GovernedAdvice(AdviceSet):
    """Advice after the guardrails, with what they removed and why (kept in the ledger)."""

    guardrail_events: tuple[dict, ...] = ()


def apply_guardrails(
    policy: Policy, result: AdviceSet, data: PatientData, recently_overridden: AbstractSet[str]
) -> GovernedAdvice:
    events: list[dict] = []
    inputs = _input_references(data)
    kept: list[Advice] = []
    for advice in result.advice:
        problem = _problem(policy, advice, inputs, recently_overridden)
        if problem is not None:
            events.append({"guardrail": problem, "rule": advice.rule_id})
            continue
        kept.append(_downgraded(advice) if advice.confidence < policy.confidence_threshold else advice)
    events.extend({"guardrail": "max-cards", "rule": a.rule_id} for a in kept[policy.max_cards :])
    kept = kept[: policy.max_cards]
    if policy.risk_tier == "high":
        kept = [_held_for_review(advice) for advice in kept]
        events.extend({"guardrail": "held-for-review", "rule": a.rule_id} for a in kept if a.held_for_review)
    return GovernedAdvice(
        advice=tuple(kept),
        inputs_used=result.inputs_used,
        disposition=result.disposition,
        guardrail_events=tuple(events),
    )


def _problem(
    policy: Policy, advice: Advice, inputs: set[str], recently_overridden: AbstractSet[str]
) -> str | None:
    if any(item.reference not in inputs for item in advice.evidence):
        return "grounding"
    if not all(_valid(resource) for resource in _proposed_resources(advice)):
        return "invalid-proposal"
    if advice.confidence < policy.confidence_floor:
        return "below-confidence-floor"
    if advice.rule_id in recently_overridden:
        return "recently-overridden"
    return None


def _downgraded(advice: Advice) -> Advice:
    """Between floor and threshold: an info card that says so and asks for review."""
    return dataclasses.replace(
        advice,
        indicator="info",
        summary=f"Low confidence: {advice.summary}",
        rationale=advice.rationale + LOW_CONFIDENCE_NOTE,
    )


def _held_for_review(advice: Advice) -> Advice:
    """High-risk output never reaches the EHR as an action it could apply in one click: anything
    that would create a record waits in Countersign until a clinician reviews, edits and signs it."""
    creates = tuple(s for s in advice.suggestions if any(a.type == "create" for a in s.actions))
    if not creates:
        return advice
    others = tuple(s for s in advice.suggestions if s not in creates)
    return dataclasses.replace(advice, suggestions=others, held_for_review=creates)


def _proposed_resources(advice: Advice) -> Iterable[dict]:
    for suggestion in advice.suggestions:
        for action in suggestion.actions:
            if action.resource is not None:
                yield action.resource


def _valid(resource: dict) -> bool:
    try:
        get_fhir_model_class(resource.get("resourceType", "")).model_validate(resource)
    except (KeyError, ValueError, ValidationError):
        return False
    return True


def _input_references(data: PatientData) -> set[str]:
    every = (*data.resources, *data.draft_orders)
    return {f"{r.get('resourceType')}/{r.get('id')}" for r in every} | {f"Patient/{data.patient_id}"}
