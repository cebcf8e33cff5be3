"""The standard hooks of the CDS Hooks Library 1.0.1 and what their context must hold (reference §7)."""

from __future__ import annotations

from dataclasses import dataclass

CLINICIAN = frozenset({"Practitioner", "PractitionerRole"})
ANY_USER = CLINICIAN | {"Patient", "RelatedPerson"}


@dataclass(frozen=True)
class HookDefinition:
    """Context rules of one hook: required fields, optional fields, and which may be prefetch tokens."""

    name: str
    required: frozenset[str]
    optional: frozenset[str]
    prefetch_tokens: frozenset[str]
    user_types: frozenset[str]


def _hook(
    name: str,
    required: set[str],
    optional: set[str] = frozenset(),
    user_types: frozenset[str] = CLINICIAN,
) -> HookDefinition:
    tokens = {"userId", "patientId", "encounterId"} & (required | optional)
    return HookDefinition(name, frozenset(required), frozenset(optional), frozenset(tokens), user_types)


HOOKS: dict[str, HookDefinition] = {
    hook.name: hook
    for hook in (
        _hook("patient-view", {"userId", "patientId"}, {"encounterId"}, ANY_USER),
        _hook("order-select", {"userId", "patientId", "selections", "draftOrders"}, {"encounterId"}),
        _hook("order-sign", {"userId", "patientId", "draftOrders"}, {"encounterId"}),
        _hook("encounter-start", {"userId", "patientId", "encounterId"}),
        _hook("encounter-discharge", {"userId", "patientId", "encounterId"}),
        _hook("appointment-book", {"userId", "patientId", "appointments"}, {"encounterId"}, ANY_USER),
    )
}

USER_TOKENS = {
    "Practitioner": "userPractitionerId",
    "PractitionerRole": "userPractitionerRoleId",
    "Patient": "userPatientId",
    "RelatedPerson": "userRelatedPersonId",
}
