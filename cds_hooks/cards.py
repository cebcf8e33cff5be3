"""Render advice as CDS Hooks 2.0.1 cards that pass the response rules V1-V13 (reference §4.4).

Every card and suggestion gets a fresh UUID (feedback needs them), proposed resources are
labelled AI-asserted and carry the suggestion's identifier, and all text that came from the
patient's record is escaped so that ``detail`` stays plain GitHub-flavoured markdown.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass

from cds_hooks.advice import Advice, ProposedAction, ProposedSuggestion
from cds_hooks.override_reasons import OVERRIDE_REASONS
from fhir_profiles.security_labels import label_ai_asserted

SUMMARY_LIMIT = 139
TOPIC_SYSTEM = "https://countersign.health/fhir/CodeSystem/cds-topic"
AI_EXTENSION = "health.countersign.ai"
DISCLOSURE = "_AI-generated suggestion from a decision-support model. Verify before acting._"
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~])")


@dataclass(frozen=True)
class RenderedCard:
    """A card as sent, with the advice it came from and the uuids the EHR will echo back."""

    card: dict
    advice: Advice
    held_for_review: tuple[dict, ...] = ()

    @property
    def uuid(self) -> str:
        return self.card["uuid"]

    @property
    def suggestion_uuids(self) -> tuple[str, ...]:
        return tuple(s["uuid"] for s in (*self.card.get("suggestions", ()), *self.held_for_review))


def escape_markdown(text: str) -> str:
    """Neutralise markdown and HTML in text that came from the record (V13)."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def truncate_summary(summary: str) -> str:
    """Summaries must be under 140 characters; cut at a word boundary and add an ellipsis."""
    summary = " ".join(summary.split())
    if len(summary) <= SUMMARY_LIMIT:
        return summary
    cut = summary[: SUMMARY_LIMIT - 1].rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:.") + "…"


def render_card(advice: Advice, app_launch_url: str) -> RenderedCard:
    card_uuid = str(uuid.uuid4())
    card: dict = {
        "uuid": card_uuid,
        "summary": truncate_summary(advice.summary),
        "indicator": advice.indicator,
        "detail": _detail(advice),
        "source": _source(advice),
    }
    if advice.suggestions:
        card["selectionBehavior"] = "at-most-one"
        card["suggestions"] = _suggestions(advice.suggestions)
    card["overrideReasons"] = [dict(reason) for reason in OVERRIDE_REASONS]
    card["links"] = [_app_link(card_uuid, app_launch_url, review=bool(advice.held_for_review))]
    card["extension"] = {AI_EXTENSION: _ai_extension(advice)}
    held = tuple(_suggestions(advice.held_for_review))
    return RenderedCard(card=card, advice=advice, held_for_review=held)


def _app_link(card_uuid: str, app_launch_url: str, *, review: bool) -> dict:
    """A SMART link to the card in Countersign; for held proposals, to the review-and-sign page."""
    context: dict = {"card": card_uuid}
    label = "Review this AI suggestion in Countersign"
    if review:
        context["review"] = True
        label = "Review, edit and sign the AI draft in Countersign (nothing is written until you sign)"
    return {"label": label, "url": app_launch_url, "type": "smart", "appContext": json.dumps(context)}


def _source(advice: Advice) -> dict:
    return {
        "label": advice.source.label,
        "url": advice.source.url,
        "topic": {
            "system": TOPIC_SYSTEM,
            "code": advice.source.topic_code,
            "display": advice.source.topic_display,
        },
    }


def _detail(advice: Advice) -> str:
    lines = [advice.rationale.strip(), ""]
    if advice.evidence:
        lines.append("**Evidence used**")
        lines.extend(
            f"- {escape_markdown(item.description)} (`{escape_markdown(item.reference)}`)"
            for item in advice.evidence
        )
        lines.append("")
    lines.append(f"**Confidence:** {advice.confidence:.2f} ({confidence_band(advice.confidence)})")
    if advice.citation:
        lines.append(f"**Source of the rule:** {escape_markdown(advice.citation)}")
    lines.extend(["", f"**Model:** {escape_markdown(advice.source.label)}", "", DISCLOSURE])
    return "\n".join(lines)


def confidence_band(confidence: float) -> str:
    """Words for the number, so a clinician does not have to calibrate decimals."""
    if confidence >= 0.85:
        return "high"
    if confidence >= 0.6:
        return "moderate"
    return "low"


def _suggestions(suggestions: tuple[ProposedSuggestion, ...]) -> list[dict]:
    recommended_seen = False
    rendered = []
    for suggestion in suggestions:
        suggestion_uuid = str(uuid.uuid4())
        item: dict = {"label": suggestion.label, "uuid": suggestion_uuid}
        if suggestion.recommended and not recommended_seen:
            item["isRecommended"] = True
            recommended_seen = True
        if suggestion.actions:
            item["actions"] = [_action(a, suggestion_uuid) for a in suggestion.actions]
        rendered.append(item)
    return rendered


def _action(action: ProposedAction, suggestion_uuid: str) -> dict:
    rendered: dict = {"type": action.type, "description": action.description}
    if action.type == "delete":
        rendered["resourceId"] = action.resource_id
    else:
        rendered["resource"] = label_ai_asserted(action.resource or {}, suggestion_uuid)
    return rendered


def _ai_extension(advice: Advice) -> dict:
    extension: dict = {"confidence": round(advice.confidence, 4)}
    if advice.evidence:
        extension["evidence"] = [item.reference for item in advice.evidence]
    if advice.rule_id:
        extension["rule"] = advice.rule_id
    if advice.held_for_review:
        extension["reviewRequired"] = True
    return extension | advice.extra
