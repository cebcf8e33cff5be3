"""Turning an accepted suggestion's actions into one FHIR transaction (pure: no I/O).

The EHR, not the service, writes to the record (CDS Hooks §4.3): all of a suggestion's actions
land together or not at all, and only on the chart the card was issued for.
"""

from __future__ import annotations

import uuid

RELATIVE_REFERENCE_PARTS = 2


class SuggestionError(ValueError):
    """An action the EHR will not apply; ``location`` names the offending member."""

    def __init__(self, message: str, location: str) -> None:
        super().__init__(message)
        self.location = location


def actions_transaction(actions: list[dict], patient_id: str) -> dict:
    """A transaction Bundle applying ``actions`` (create → POST, update → PUT, delete → DELETE)."""
    if not actions:
        raise SuggestionError("the suggestion has no actions to apply", "suggestion.actions")
    entries = [_entry(action, patient_id, index) for index, action in enumerate(actions)]
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _entry(action: dict, patient_id: str, index: int) -> dict:
    where = f"suggestion.actions[{index}]"
    kind = action.get("type")
    if kind == "delete":
        target = _relative_reference(action.get("resourceId"), f"{where}.resourceId")
        return {"request": {"method": "DELETE", "url": target}}
    resource = action.get("resource")
    if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
        raise SuggestionError("the action carries no FHIR resource", f"{where}.resource")
    _check_patient(resource, patient_id, f"{where}.resource")
    if kind == "create":
        return {
            "fullUrl": f"urn:uuid:{uuid.uuid4()}",
            "resource": resource,
            "request": {"method": "POST", "url": resource["resourceType"]},
        }
    if kind == "update":
        if not resource.get("id"):
            raise SuggestionError("an update needs the resource's id", f"{where}.resource.id")
        url = f"{resource['resourceType']}/{resource['id']}"
        return {"resource": resource, "request": {"method": "PUT", "url": url}}
    raise SuggestionError(f"unknown action type {kind!r}", f"{where}.type")


def _relative_reference(value: object, location: str) -> str:
    parts = value.split("/") if isinstance(value, str) else []
    if len(parts) != RELATIVE_REFERENCE_PARTS or not all(parts):
        raise SuggestionError("resourceId must be a relative reference Type/id", location)
    return "/".join(parts)


def _check_patient(resource: dict, patient_id: str, location: str) -> None:
    """A suggestion may only write to the chart it was shown on."""
    subject = resource.get("subject") or resource.get("patient") or {}
    reference = subject.get("reference") if isinstance(subject, dict) else None
    if reference is not None and reference != f"Patient/{patient_id}":
        raise SuggestionError("the resource belongs to another patient", f"{location}.subject")
