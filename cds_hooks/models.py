"""Request bodies of the CDS Hooks 2.0.1 service call and feedback, enforced as the spec words them.

Only the envelope is validated with pydantic. Prefetch and draft orders stay plain dicts: a full
FHIR validation of them costs ~0.2 ms a resource on the request path (DESIGN.md).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    StrictInt,
    ValidationError,
    model_validator,
)

from cds_hooks.hooks import HookDefinition

NonEmpty = Annotated[str, Field(min_length=1, pattern=r"\S")]
USER_ID = re.compile(r"^(?P<type>[A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})$")
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")


def _uuid(value: str) -> str:
    try:
        uuid.UUID(value)
    except ValueError:
        raise ValueError("must be a UUID") from None
    return value


def _utc_timestamp(value: Any) -> datetime:
    if not isinstance(value, str) or not RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with a time zone, e.g. 2026-01-31T10:05:31Z")
    return datetime.fromisoformat(value).astimezone(UTC)


Uuid = Annotated[str, AfterValidator(_uuid)]


class SpecModel(BaseModel):
    """Base: unknown members are ignored (extensions), explicit nulls are refused (spec §2.2)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _no_nulls(cls, data: Any) -> Any:
        if isinstance(data, dict):
            nulls = [key for key, value in data.items() if value is None]
            if nulls:
                raise ValueError(f"members must not be null: {', '.join(sorted(nulls))}")
        return data


class FhirAuthorization(SpecModel):
    access_token: NonEmpty
    token_type: Literal["Bearer"]
    expires_in: StrictInt = Field(ge=0)
    scope: NonEmpty
    subject: NonEmpty
    patient: NonEmpty | None = None


class HookRequest(SpecModel):
    hook: NonEmpty
    hookInstance: Uuid
    fhirServer: HttpUrl | None = None
    fhirAuthorization: FhirAuthorization | None = None
    context: dict[str, Any] = Field(min_length=1)
    prefetch: dict[str, Any] | None = None
    extension: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _server_with_token(self) -> HookRequest:
        if self.fhirAuthorization is not None and self.fhirServer is None:
            raise ValueError("fhirServer is required when fhirAuthorization is present")
        return self

    @property
    def fhir_server(self) -> str | None:
        """``fhirServer`` without a trailing slash, ready to have a relative query appended."""
        return str(self.fhirServer).rstrip("/") if self.fhirServer else None


@dataclass(frozen=True)
class HookContext:
    """The context fields the service uses, checked against the hook's definition."""

    user_id: str
    patient_id: str
    encounter_id: str | None
    selections: tuple[str, ...]
    draft_orders: tuple[dict, ...]
    fields: dict[str, Any]

    @property
    def user_type(self) -> str:
        return self.user_id.split("/", 1)[0]


class ContextError(ValueError):
    """A hook context that breaks the hook's definition; ``field`` names the member."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def parse_context(hook: HookDefinition, context: dict[str, Any]) -> HookContext:
    """Check ``context`` against the hook's required fields and types (reference §7, §9.3)."""
    missing = sorted(name for name in hook.required if name not in context)
    if missing:
        raise ContextError(f"context.{missing[0]}", f"{hook.name} requires context.{missing[0]}")
    for name, value in context.items():
        if value is None or value == "" or value == [] or value == {}:
            raise ContextError(f"context.{name}", "context members must not be null or empty")
    user_id = _user_id(hook, context["userId"])
    patient_id = _fhir_id(context, "patientId")
    encounter_id = _fhir_id(context, "encounterId") if "encounterId" in context else None
    draft_orders = _bundle_resources(context, "draftOrders") if "draftOrders" in context else ()
    selections = _selections(context, draft_orders) if "selections" in hook.required else ()
    return HookContext(user_id, patient_id, encounter_id, selections, draft_orders, context)


def _user_id(hook: HookDefinition, value: Any) -> str:
    match = USER_ID.match(value) if isinstance(value, str) else None
    if match is None:
        raise ContextError("context.userId", "context.userId must be a relative reference Type/id")
    if match["type"] not in hook.user_types:
        allowed = ", ".join(sorted(hook.user_types))
        raise ContextError("context.userId", f"{hook.name} userId must reference one of {allowed}")
    return value


def _fhir_id(context: dict[str, Any], name: str) -> str:
    value = context[name]
    if not isinstance(value, str) or not FHIR_ID.match(value):
        raise ContextError(f"context.{name}", f"context.{name} must be a FHIR id")
    return value


def _bundle_resources(context: dict[str, Any], name: str) -> tuple[dict, ...]:
    bundle = context[name]
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise ContextError(f"context.{name}", f"context.{name} must be a FHIR Bundle")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise ContextError(f"context.{name}", f"context.{name}.entry must be an array")
    resources = tuple(entry.get("resource") for entry in entries if isinstance(entry, dict))
    if len(resources) != len(entries) or not all(_is_resource(r) for r in resources):
        raise ContextError(f"context.{name}", f"every context.{name} entry needs a resource")
    return resources


def _is_resource(value: Any) -> bool:
    return isinstance(value, dict) and isinstance(value.get("resourceType"), str)


def _selections(context: dict[str, Any], draft_orders: tuple[dict, ...]) -> tuple[str, ...]:
    selections = context["selections"]
    if not isinstance(selections, list) or not all(isinstance(s, str) for s in selections):
        raise ContextError("context.selections", "context.selections must be an array of Type/id")
    drafted = {f"{r['resourceType']}/{r.get('id')}" for r in draft_orders}
    unknown = [s for s in selections if s not in drafted]
    if unknown:
        raise ContextError("context.selections", "every selection must be one of the draftOrders")
    return tuple(selections)


class Coding(SpecModel):
    system: NonEmpty
    code: NonEmpty
    display: NonEmpty | None = None


class OverrideReason(SpecModel):
    reason: Coding | None = None
    userComment: NonEmpty | None = None

    @model_validator(mode="after")
    def _reason_or_comment(self) -> OverrideReason:
        if self.reason is None and self.userComment is None:
            raise ValueError("overrideReason needs a reason or a userComment")
        return self


class AcceptedSuggestion(SpecModel):
    id: NonEmpty


class FeedbackItem(SpecModel):
    card: Uuid
    outcome: Literal["accepted", "overridden"]
    acceptedSuggestions: list[AcceptedSuggestion] | None = Field(default=None, min_length=1)
    overrideReason: OverrideReason | None = None
    outcomeTimestamp: Annotated[datetime, BeforeValidator(_utc_timestamp)]

    @model_validator(mode="after")
    def _outcome_members(self) -> FeedbackItem:
        if self.outcome == "accepted" and self.acceptedSuggestions is None:
            raise ValueError("an accepted outcome requires acceptedSuggestions")
        if self.outcome == "accepted" and self.overrideReason is not None:
            raise ValueError("an accepted outcome cannot carry an overrideReason")
        if self.outcome == "overridden" and self.acceptedSuggestions is not None:
            raise ValueError("an overridden outcome cannot carry acceptedSuggestions")
        return self


class FeedbackRequest(SpecModel):
    feedback: list[FeedbackItem] = Field(min_length=1)


def describe_validation_error(error: ValidationError) -> tuple[str, list[str]]:
    """A PHI-free message and FHIRPath-like locations; the submitted values are never echoed."""
    problems = error.errors(include_url=False, include_input=False, include_context=False)
    locations = [".".join(str(part) for part in problem["loc"]) or "$" for problem in problems]
    first = problems[0]
    where = locations[0]
    return (f"{where}: {first['msg']}" if where != "$" else first["msg"]), locations
