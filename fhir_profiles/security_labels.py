"""AI-asserted labelling of resources we propose (reference ai-provenance-audit §0, §1(c))."""

from __future__ import annotations

import copy

AIAST = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}
URI_IDENTIFIER_SYSTEM = "urn:ietf:rfc:3986"


def suggestion_identifier(suggestion_uuid: str) -> dict:
    """The identifier that lets write-back find the resource an EHR created from a suggestion."""
    return {"system": URI_IDENTIFIER_SYSTEM, "value": f"urn:uuid:{suggestion_uuid}"}


def label_ai_asserted(resource: dict, suggestion_uuid: str) -> dict:
    """A copy of ``resource`` labelled AIAST and carrying the suggestion's identifier."""
    labelled = copy.deepcopy(resource)
    meta = labelled.setdefault("meta", {})
    security = meta.setdefault("security", [])
    if not any(label.get("code") == AIAST["code"] for label in security):
        security.append(dict(AIAST))
    identifiers = labelled.setdefault("identifier", [])
    identifiers.append(suggestion_identifier(suggestion_uuid))
    return labelled
