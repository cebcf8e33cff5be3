"""OperationOutcome bodies for error responses (CDS Hooks 3.0 SHOULD; our policy for 2.0.1)."""

from __future__ import annotations

from typing import Literal

from fhir.resources.R4B.operationoutcome import OperationOutcome

Severity = Literal["fatal", "error", "warning", "information"]


def operation_outcome(
    code: str,
    diagnostics: str,
    *,
    severity: Severity = "error",
    expression: list[str] | None = None,
) -> dict:
    """One-issue OperationOutcome as JSON; ``code`` is from the FHIR issue-type value set."""
    issue: dict = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = expression
    return OperationOutcome(issue=[issue]).model_dump(mode="json", exclude_none=True)
