"""The response rules V1-V13 of reference cds-hooks.md §4.4, as one checker every test can call."""

from __future__ import annotations

import re
import uuid
from urllib.parse import urlparse

INDICATORS = {"info", "warning", "critical"}
SELECTION = {"at-most-one", "any"}
ACTION_TYPES = {"create", "update", "delete"}


def _absolute(url: str) -> bool:
    parts = urlparse(url)
    return bool(parts.scheme in ("http", "https") and parts.netloc)


def _no_empties(value: object, path: str, problems: list[str]) -> None:
    if value is None or value == "" or value == [] or value == {}:
        problems.append(f"{path} is null or empty")
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_empties(item, f"{path}.{key}", problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _no_empties(item, f"{path}[{index}]", problems)


def response_problems(body: dict) -> list[str]:
    """Every rule the response breaks; an empty list means it conforms."""
    problems: list[str] = []
    if not isinstance(body.get("cards"), list):
        return ["V1: no cards array"]
    for index, card in enumerate(body["cards"]):
        _no_empties(card, f"cards[{index}]", problems)
        problems.extend(f"cards[{index}]: {p}" for p in card_problems(card))
    uuids = [c.get("uuid") for c in body["cards"]] + [
        s.get("uuid") for c in body["cards"] for s in c.get("suggestions", [])
    ]
    if len(uuids) != len(set(uuids)):
        problems.append("V11: uuids are not unique")
    return problems


def card_problems(card: dict) -> list[str]:
    problems = []
    summary = card.get("summary")
    if not isinstance(summary, str) or len(summary) >= 140:
        problems.append("V3: summary missing or 140+ characters")
    if card.get("indicator") not in INDICATORS:
        problems.append("V3: bad indicator")
    source = card.get("source", {})
    if not source.get("label"):
        problems.append("V3: source.label missing")
    if "url" in source and not _absolute(source["url"]):
        problems.append("V10: source.url not absolute")
    topic = source.get("topic")
    if topic is not None and not (topic.get("code") and topic.get("system")):
        problems.append("V10: topic is not a Coding")
    try:
        uuid.UUID(card.get("uuid", ""))
    except ValueError:
        problems.append("V11: card uuid is not a UUID")
    problems.extend(_suggestion_problems(card))
    for reason in card.get("overrideReasons", []):
        if not (reason.get("code") and reason.get("system") and reason.get("display")):
            problems.append("V8: override reason without code, system and display")
    for link in card.get("links", []):
        if not (
            link.get("label") and _absolute(link.get("url", "")) and link.get("type") in ("absolute", "smart")
        ):
            problems.append("V9: bad link")
        if "appContext" in link and link.get("type") != "smart":
            problems.append("V9: appContext on an absolute link")
    if re.search(r"<\s*script|<\s*[a-z]+[^>]*>", card.get("detail", ""), re.IGNORECASE):
        problems.append("V13: raw HTML in detail")
    return problems


def _suggestion_problems(card: dict) -> list[str]:
    suggestions = card.get("suggestions")
    if not suggestions:
        return []
    problems = []
    if card.get("selectionBehavior") not in SELECTION:
        problems.append("V4: suggestions without a valid selectionBehavior")
    if (
        card.get("selectionBehavior") == "at-most-one"
        and sum(bool(s.get("isRecommended")) for s in suggestions) > 1
    ):
        problems.append("V5: more than one recommended suggestion with at-most-one")
    for suggestion in suggestions:
        if not suggestion.get("label"):
            problems.append("V6: suggestion without label")
        try:
            uuid.UUID(suggestion.get("uuid", ""))
        except ValueError:
            problems.append("V11: suggestion uuid is not a UUID")
        for action in suggestion.get("actions", []):
            problems.extend(_action_problems(action))
    return problems


def _action_problems(action: dict) -> list[str]:
    problems = []
    if action.get("type") not in ACTION_TYPES or not action.get("description"):
        problems.append("V6: action without valid type and description")
    if action.get("type") == "delete":
        if "resource" in action or not action.get("resourceId"):
            problems.append("V7: delete must have resourceId and no resource")
    elif not isinstance(action.get("resource"), dict) or "resourceType" not in action["resource"]:
        problems.append("V7: create/update without a resource")
    return problems
