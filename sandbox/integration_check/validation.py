"""Asking the server to validate what it holds: ``POST {Type}/$validate`` with the resource.

A server that does not offer the operation (404, 405, 501) is not failed for it: the check is
skipped. Otherwise an OperationOutcome with an error or fatal issue is a failure, whatever the
HTTP status it came with (HAPI answers 200 or 412 depending on its version).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sandbox.integration_check.client import FhirClient
from sandbox.integration_check.hints import FAILING, NOT_OFFERED, outcome_hint

Outcome = Literal["valid", "invalid", "not-offered"]


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    hint: str = ""


@dataclass
class Validator:
    client: FhirClient
    _not_offered: set[str] = field(default_factory=set)
    _done: dict[str, Verdict] = field(default_factory=dict)

    def validate(self, resource: dict) -> Verdict:
        """The server's verdict on ``resource`` (each resource asked once, by type and id)."""
        resource_type = resource["resourceType"]
        if resource_type in self._not_offered:
            return Verdict("not-offered")
        reference = f"{resource_type}/{resource.get('id')}"
        if reference not in self._done:
            self._done[reference] = self._ask(resource)
        return self._done[reference]

    def _ask(self, resource: dict) -> Verdict:
        resource_type = resource["resourceType"]
        answer = self.client.request("POST", f"{resource_type}/$validate", json=resource)
        if answer.status in NOT_OFFERED:
            self._not_offered.add(resource_type)
            return Verdict("not-offered")
        outcome = answer.outcome
        if outcome is None:
            return Verdict("valid") if answer.ok else Verdict("invalid", outcome_hint(answer.status, None))
        if any(issue.get("severity") in FAILING for issue in outcome.get("issue", [])):
            return Verdict(
                "invalid",
                outcome_hint(answer.status, outcome, f" to validate {resource_type} (see --check-scope)"),
            )
        return Verdict("valid")
