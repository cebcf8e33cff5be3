"""Short fix hints from what a FHIR server answered, safe to print (no PHI).

The server's own words go through ``outcome_summary`` (which masks anything that could be data);
the only things taken verbatim are the canonical URLs of StructureDefinitions it names, which are
definitions, never data, and the names of the search parameters the check itself sent.
"""

from __future__ import annotations

import re

from app.audit.outcome_summary import summarize

PROFILE_URL = re.compile(r"https?://[A-Za-z0-9.:/_-]+/StructureDefinition/[A-Za-z0-9._-]+")
FAILING = ("fatal", "error")
UNAUTHORIZED, FORBIDDEN = 401, 403
NOT_OFFERED = frozenset({404, 405, 501})


def outcome_hint(status: int | None, outcome: dict | None, scope_hint: str = "") -> str:
    """Why the server refused a write or a read, and what to change (``scope_hint``: what the
    missing scope was for, and the option that sets it)."""
    if status == UNAUTHORIZED:
        return "HTTP 401 from the server: it does not accept the credentials (check --auth and its options)"
    if status == FORBIDDEN:
        return f"HTTP 403 from the server: the credentials lack a scope{scope_hint}"
    outcome = _refusing(outcome)
    profiles = profile_urls(outcome)
    where = _paths(outcome)
    if profiles:
        return (
            f"the server refuses profile {', '.join(profiles)}{where}: load Countersign's "
            "StructureDefinitions (fhir_profiles/structure_definitions/) or compare the server's copy"
        )
    issues = [issue for issue in summarize(outcome) if issue.severity in FAILING] or summarize(outcome)
    if issues:
        return f"the server answered HTTP {status}: {issues[0].line()}" if status else issues[0].line()
    return f"the server answered HTTP {status}" if status else "the server did not answer"


def search_hint(status: int | None, outcome: dict | None, resource_type: str, params: list[str]) -> str:
    """A refused search: a 400 naming a parameter the check sent means the server lacks it."""
    text = _text(outcome)
    named = [name for name in params if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text)]
    if status == 400 and named:
        return f"the server lacks search parameter {', '.join(named)} on {resource_type}"
    return outcome_hint(status, outcome, f" to search {resource_type} (see --check-scope)")


def profile_urls(outcome: dict | None) -> list[str]:
    """The StructureDefinition URLs an OperationOutcome names, in order, once each."""
    return list(dict.fromkeys(PROFILE_URL.findall(_text(outcome))))


def _refusing(outcome: dict | None) -> dict | None:
    """The outcome's error and fatal issues, when it has any: HAPI also lists every warning (a
    best-practice ``dom-6`` names the DomainResource profile), which is not why it refused."""
    if not isinstance(outcome, dict) or not isinstance(outcome.get("issue"), list):
        return outcome
    failing = [i for i in outcome["issue"] if isinstance(i, dict) and i.get("severity") in FAILING]
    return {**outcome, "issue": failing} if failing else outcome


def _paths(outcome: dict | None) -> str:
    paths = [path for issue in summarize(outcome) for path in issue.expression if path != "…"]
    return f" at {', '.join(dict.fromkeys(paths))}" if paths else ""


def _text(outcome: dict | None) -> str:
    """Every string of the outcome's issues (diagnostics, details, expression), for matching only;
    not their extensions, whose URLs name StructureDefinitions too (HAPI puts the line, column and
    message id of each issue in ``operationoutcome-issue-*`` extensions)."""
    if not isinstance(outcome, dict):
        return ""
    found: list[str] = []

    def collect(value: object) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, dict):
            for name, item in value.items():
                if name != "extension":
                    collect(item)
        elif isinstance(value, list):
            for item in value:
                collect(item)

    collect(outcome.get("issue"))
    return " ".join(found)
