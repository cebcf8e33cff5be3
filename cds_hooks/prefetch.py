"""Prefetch: fill templates, tell missing from known-empty from failed, fetch what is missing.

The three states differ by the spec (reference §2.4): an absent key is fetched from
``fhirServer``; ``null`` means the client ran the query and found nothing; an
OperationOutcome means the client failed and the data must be fetched or reported.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from cds_hooks.discovery import TOKEN, ServiceDescriptor
from cds_hooks.fhir_client import FhirReader, FhirReadError, has_next_page
from cds_hooks.hooks import HOOKS, USER_TOKENS
from cds_hooks.models import HookContext, HookRequest

ERROR_SEVERITIES = {"error", "fatal"}
TOKEN_CONTEXT_FIELDS = frozenset().union(*(hook.prefetch_tokens for hook in HOOKS.values()))


class PrefetchUnavailable(Exception):
    """Required data could not be obtained: the service answers 412 (spec SHALL)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"prefetch {key!r} unavailable: {reason}")
        self.key = key


@dataclass(frozen=True)
class ReaderSettings:
    timeout: float
    budget: float
    max_pages: int


@dataclass(frozen=True)
class ResolvedPrefetch:
    """Every declared key's value (a resource, a Bundle, or ``None``) and which keys we fetched."""

    values: dict[str, dict | None]
    fetched: tuple[str, ...]

    def resources(self) -> list[dict]:
        """All resources across keys."""
        found: list[dict] = []
        for value in self.values.values():
            found.extend(resources_of(value))
        return found


def resources_of(value: dict | None) -> list[dict]:
    """The resources a prefetch value holds, Bundles unwrapped and outcome entries dropped."""
    if value is None:
        return []
    if value.get("resourceType") != "Bundle":
        return [value]
    return [r for r in _entry_resources(value) if r.get("resourceType") != "OperationOutcome"]


def _entry_resources(bundle: dict) -> list[dict]:
    entries = bundle.get("entry", ())
    if not isinstance(entries, list):
        return []
    return [
        entry["resource"]
        for entry in entries
        if isinstance(entry, dict) and isinstance(entry.get("resource"), dict)
    ]


def render_template(template: str, context: HookContext) -> str | None:
    """Fill a template's tokens; ``None`` when a token has no value for this user or context."""
    values: dict[str, object] = {f"context.{name}": context.fields.get(name) for name in TOKEN_CONTEXT_FIELDS}
    user_token = USER_TOKENS.get(context.user_type)
    if user_token is not None:
        values[user_token] = context.user_id.split("/", 1)[1]
    unresolved: list[str] = []

    def fill(match: re.Match[str]) -> str:
        value = values.get(match[1])
        if isinstance(value, str):
            return value
        unresolved.append(match[1])
        return ""

    rendered = TOKEN.sub(fill, template)
    return None if unresolved else rendered


def resolve_prefetch(
    descriptor: ServiceDescriptor,
    request: HookRequest,
    context: HookContext,
    reader_settings: ReaderSettings,
) -> ResolvedPrefetch:
    supplied = request.prefetch or {}
    reader = _reader(request, reader_settings)
    values: dict[str, dict | None] = {}
    fetched: list[str] = []
    for key, template in descriptor.prefetch.items():
        value = supplied.get(key, ...)
        if value is None:
            values[key] = None
        elif _usable(value):
            values[key] = _complete(key, value, reader)
        else:
            values[key] = _fetch(key, template, context, reader)
            fetched.append(key)
    return ResolvedPrefetch(values, tuple(fetched))


def _reader(request: HookRequest, settings: ReaderSettings) -> FhirReader | None:
    if request.fhir_server is None:
        return None
    token = request.fhirAuthorization.access_token if request.fhirAuthorization else None
    deadline = time.monotonic() + settings.budget
    return FhirReader(request.fhir_server, token, settings.timeout, deadline, settings.max_pages)


def _usable(value: object) -> bool:
    """A supplied value we can trust: a resource or Bundle that does not report an error."""
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        return False
    if value["resourceType"] == "OperationOutcome":
        return False
    if value["resourceType"] == "Bundle":
        return not any(_is_error_outcome(r) for r in _entry_resources(value))
    return True


def _is_error_outcome(resource: dict) -> bool:
    return resource.get("resourceType") == "OperationOutcome" and any(
        isinstance(issue, dict) and issue.get("severity") in ERROR_SEVERITIES
        for issue in resource.get("issue", ())
    )


def _complete(key: str, value: dict, reader: FhirReader | None) -> dict:
    """A paginated prefetch Bundle is completed from the server when we can reach it."""
    if value.get("resourceType") != "Bundle" or not has_next_page(value) or reader is None:
        return value
    try:
        return reader.complete_pages(value)
    except FhirReadError as error:
        raise PrefetchUnavailable(key, str(error)) from None


def _fetch(key: str, template: str, context: HookContext, reader: FhirReader | None) -> dict | None:
    query = render_template(template, context)
    if query is None:
        return None
    if reader is None:
        raise PrefetchUnavailable(key, "not supplied and no fhirServer to fetch it from")
    try:
        return reader.read(query)
    except FhirReadError as error:
        raise PrefetchUnavailable(key, str(error)) from None
