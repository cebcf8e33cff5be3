"""The OpenAPI 3.1 description of every HTTP endpoint, served at ``/openapi.json``.

Nothing in it is written twice. Paths, methods and path parameters come from the app's URL map;
request and response schemas from the pydantic models that parse the requests and build the
answers (or, for protocol shapes the code builds as dicts, from the models below that describe
them); the route table at the end adds only what code cannot say: summaries, tags, status codes.
A route without a row, or a row without a route, stops the app at start.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from uuid import UUID

from flask import Blueprint, Flask, Response, current_app, jsonify
from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, JsonSchemaValue, models_json_schema
from pydantic_core import core_schema
from werkzeug.routing import Map, Rule

from app.web.api import (
    ActRequest,
    ModelDetail,
    ModelList,
    PromotionAct,
    ProposalRequest,
    StatusChange,
    StatusChangeRequest,
)
from cds_hooks.models import Coding, FeedbackItem, FeedbackRequest, HookRequest, SpecModel
from fhir_profiles.operation_outcome import Severity

bp = Blueprint("openapi", __name__)
DOCUMENT_KEY = "openapi_document"
REF = "#/components/schemas/{model}"
JSON = "application/json"
HTML = "text/html"
FORM = "application/x-www-form-urlencoded"
STRING = {"type": "string"}
OBJECT = {"type": "object"}
NULL = {"type": "null"}
IGNORED_METHODS = {"HEAD", "OPTIONS"}
RULE_ARGUMENT = re.compile(r"<(?:[^<>:]+:)?(\w+)>")
PATH_EXAMPLES = {
    "service_id": "medication-safety",
    "model_id": "medication-safety",
    "card_uuid": "00000000-0000-4000-8000-000000000000",
    "filename": "countersign.css",
    "kid": "countersign-smart-1",
    "proposal_id": "1",
    "hook_instance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
}
UUID_MEMBERS: dict[type[BaseModel], str] = {HookRequest: "hookInstance", FeedbackItem: "card"}
INFO = {
    "title": "Countersign",
    "version": "0.1.0",
    "description": "Governed AI decision support: a CDS Hooks 2.0.1 service, its feedback "
    "endpoint, the JSON API of the SMART app, the app's pages, and operations endpoints.",
}
SECURITY_SCHEMES = {
    "cdsClientJwt": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A JWT signed by a trusted CDS client, aud = the exact URL called, "
        "a fresh jti per call (CDS Hooks 2.0.1 §3.2).",
    },
    "metricsToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "COUNTERSIGN_METRICS_TOKEN, the scraper's shared secret.",
    },
}
Schema = type[BaseModel] | dict[str, Any]
Refs = Mapping[tuple[type[BaseModel], JsonSchemaMode], JsonSchemaValue]


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(current_app.extensions[DOCUMENT_KEY])


def init_app(app: Flask, public_base_url: str) -> None:
    """Built once, after every blueprint is registered: the document describes the whole URL map."""
    app.register_blueprint(bp)
    app.extensions[DOCUMENT_KEY] = document(app.url_map, public_base_url)


def document(url_map: Map, public_base_url: str) -> dict:
    rules = _documented_rules(url_map)
    refs, definitions = models_json_schema(
        _model_keys(ROUTES.values()), ref_template=REF, schema_generator=_JsonSchema
    )
    return {
        "openapi": "3.1.0",
        "info": INFO,
        "servers": [{"url": public_base_url}],
        "paths": _paths(rules, refs),
        "components": {"schemas": definitions["$defs"], "securitySchemes": SECURITY_SCHEMES},
    }


# Shapes that cds_hooks, fhir_profiles and app.web.health build as dicts, described for the document.
# A docstring here is the schema's description.


class Service(SpecModel):
    """One discovery entry: a service and the hook it answers."""

    hook: str
    title: str | None = None
    description: str
    id: str
    prefetch: dict[str, str] | None = None
    usageRequirements: str | None = None


class Discovery(SpecModel):
    services: list[Service]


class Source(SpecModel):
    label: str
    url: str | None = None
    topic: Coding | None = None


class Suggestion(SpecModel):
    label: str
    uuid: UUID | None = None
    isRecommended: bool | None = None
    actions: list[dict[str, Any]] | None = None


class Link(SpecModel):
    label: str
    url: str
    type: Literal["absolute", "smart"]
    appContext: str | None = None


class Card(SpecModel):
    """A CDS Hooks 2.0.1 card; feedback names it by ``uuid``."""

    uuid: UUID | None = None
    summary: str = Field(max_length=140)
    detail: str | None = None
    indicator: Literal["info", "warning", "critical"]
    source: Source
    suggestions: list[Suggestion] | None = None
    selectionBehavior: Literal["at-most-one", "any"] | None = None
    overrideReasons: list[Coding] | None = None
    links: list[Link] | None = None


class CardsResponse(SpecModel):
    cards: list[Card]
    systemActions: list[dict[str, Any]] | None = None


class Issue(SpecModel):
    severity: Severity
    code: str
    diagnostics: str | None = None
    expression: list[str] | None = None


class OperationOutcome(SpecModel):
    """The body of every JSON error: a FHIR OperationOutcome."""

    resourceType: Literal["OperationOutcome"]
    issue: list[Issue] = Field(min_length=1)


class Health(BaseModel):
    status: Literal["ok"]


class ReadinessChecks(BaseModel):
    database: Literal["ok", "failed"]
    migrations: Literal["ok", "failed"]
    registry: Literal["ok", "failed"]


class Readiness(BaseModel):
    """200 when every check is ok, else 503."""

    status: Literal["ready", "not-ready"]
    checks: ReadinessChecks


class JsonWebKey(BaseModel):
    """A public key (RFC 7517): ``kty`` and its public members (RSA ``n``/``e``, EC ``crv``/``x``/``y``)."""

    model_config = ConfigDict(extra="allow")
    kty: Literal["RSA", "EC"]
    kid: str
    alg: str | None = None
    use: str | None = None


class JsonWebKeySet(BaseModel):
    keys: list[JsonWebKey]


class _JsonSchema(GenerateJsonSchema):
    """What the models' own JSON Schema cannot show. A ``SpecModel`` leaves an absent member out,
    never null (CDS Hooks §2.2), and its parser refuses null: its optional members lose the null
    option, so schemathesis sends none. Members an after-validator checks as UUIDs get the format."""

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        json_schema = super().model_schema(schema)
        model = schema["cls"]
        if issubclass(model, SpecModel):
            required = json_schema.get("required", [])
            json_schema["properties"] = {
                name: member if name in required else _never_null(member)
                for name, member in json_schema["properties"].items()
            }
        if model in UUID_MEMBERS:
            json_schema["properties"][UUID_MEMBERS[model]]["format"] = "uuid"
        return json_schema


def _never_null(member: JsonSchemaValue) -> JsonSchemaValue:
    """``T | None = None`` as plain ``T``."""
    options = [option for option in member.get("anyOf", []) if option != NULL]
    cleaned = {
        key: value for key, value in member.items() if key != "anyOf" and (key, value) != ("default", None)
    }
    if len(options) == 1:
        return cleaned | options[0]
    return cleaned | ({"anyOf": options} if options else {})


@dataclass(frozen=True)
class Reply:
    """One response: ``schema`` (a model, or JSON Schema) under ``media``, or no body at all."""

    description: str
    media: str | None = None
    schema: Schema = field(default_factory=dict)
    headers: Mapping[str, dict] = field(default_factory=dict)


@dataclass(frozen=True)
class Body:
    """A request body: a model as it validates, or JSON Schema; schemathesis sends ``example`` first."""

    schema: Schema
    media: str = JSON
    example: dict | None = None


@dataclass(frozen=True)
class Group:
    """Endpoints that share a tag, security, how they answer errors and the errors any call may get."""

    tag: str
    error: Callable[[int], Reply] | None = None
    always: tuple[int, ...] = ()
    security: tuple[str, ...] = ()


@dataclass(frozen=True)
class Operation:
    """One row of the route table: what the code cannot say about an endpoint."""

    operation_id: str
    summary: str
    group: Group
    replies: Mapping[int, Reply]
    errors: tuple[int, ...] = ()
    body: Body | None = None
    query: tuple[str, ...] = ()
    headers: tuple[str, ...] = ()
    description: str | None = None

    def responses(self) -> dict[int, Reply]:
        statuses = sorted({*self.group.always, *self.errors})
        return {**self.replies, **{status: self.group.error(status) for status in statuses}}


def _documented_rules(url_map: Map) -> list[Rule]:
    rules = list(url_map.iter_rules())
    endpoints = {rule.endpoint for rule in rules}
    if endpoints != ROUTES.keys():
        raise ValueError(
            f"OpenAPI route table: no row for {sorted(endpoints - ROUTES.keys())}, "
            f"no route for {sorted(ROUTES.keys() - endpoints)}"
        )
    return rules


def _model_keys(operations: Iterable[Operation]) -> list[tuple[type[BaseModel], JsonSchemaMode]]:
    """Request models as they validate, response models as they serialize."""
    keys: list[tuple[Schema, JsonSchemaMode]] = []
    for operation in operations:
        keys += [(reply.schema, "serialization") for reply in operation.responses().values()]
        if operation.body:
            keys.append((operation.body.schema, "validation"))
    return list(dict.fromkeys(key for key in keys if isinstance(key[0], type)))


def _paths(rules: list[Rule], refs: Refs) -> dict[str, dict]:
    paths: dict[str, dict] = {}
    for rule in rules:
        path = paths.setdefault(RULE_ARGUMENT.sub(r"{\1}", rule.rule), {})
        for method in sorted(rule.methods - IGNORED_METHODS):
            path[method.lower()] = _operation(ROUTES[rule.endpoint], rule, refs)
    return paths


def _operation(operation: Operation, rule: Rule, refs: Refs) -> dict:
    rendered = {
        "operationId": operation.operation_id,
        "summary": operation.summary,
        "description": operation.description,
        "tags": [operation.group.tag],
        "security": [{name: []} for name in operation.group.security],
        "parameters": _parameters(operation, rule),
        "requestBody": operation.body and _request_body(operation.body, refs),
        "responses": {str(status): _response(reply, refs) for status, reply in operation.responses().items()},
    }
    return {key: value for key, value in rendered.items() if value}


def _parameters(operation: Operation, rule: Rule) -> list[dict]:
    path = [
        {"name": name, "in": "path", "required": True, "schema": STRING, "example": PATH_EXAMPLES[name]}
        for name in RULE_ARGUMENT.findall(rule.rule)
    ]
    query = [_optional(name, "query") for name in operation.query]
    return path + query + [_optional(name, "header") for name in operation.headers]


def _optional(name: str, where: str) -> dict:
    return {"name": name, "in": where, "required": False, "schema": STRING}


def _schema(schema: Schema, mode: JsonSchemaMode, refs: Refs) -> JsonSchemaValue:
    return refs[schema, mode] if isinstance(schema, type) else schema


def _request_body(body: Body, refs: Refs) -> dict:
    content = {"schema": _schema(body.schema, "validation", refs)}
    if body.example:
        content["example"] = body.example
    return {"required": True, "content": {body.media: content}}


def _response(reply: Reply, refs: Refs) -> dict:
    response: dict[str, Any] = {"description": reply.description}
    if reply.media:
        response["content"] = {reply.media: {"schema": _schema(reply.schema, "serialization", refs)}}
    if reply.headers:
        response["headers"] = dict(reply.headers)
    return response


def _json(description: str, schema: Schema = OBJECT) -> Reply:
    return Reply(description, JSON, schema)


def _page(description: str) -> Reply:
    return Reply(description, HTML, STRING)


def _redirect(description: str) -> Reply:
    return Reply(description, headers={"Location": {"schema": STRING}})


def _form(*fields: str) -> Body:
    return Body({"type": "object", "properties": dict.fromkeys(fields, STRING)}, FORM)


ERROR_MEANING = {
    400: "Invalid request (OperationOutcome names the member)",
    401: "Missing or invalid client JWT, or not signed in",
    403: "Signed in without the role this needs, or a missing CSRF token",
    404: "Unknown service, card or model",
    409: "The change is not allowed in the model's current status",
    412: "Prefetch missing and no way to fetch it",
    413: "Body larger than COUNTERSIGN_MAX_BODY_BYTES",
    415: "Body is not application/json",
    429: "Rate limit: retry after the Retry-After seconds",
}
PAGE_ERROR_MEANING = {
    400: "The launch cannot go on (page says why and offers a relaunch)",
    401: "Not signed in: the launch page",
    403: "Signed in without the role, or the EHR refused",
    404: "Nothing to show: no such card, or nothing held for review on it",
    409: "Already decided, or about a patient other than the one in context",
    502: "The EHR's sign-in service could not be reached",
}
RETRY_AFTER = {"Retry-After": {"schema": STRING, "description": "seconds"}}


def _outcome(status: int) -> Reply:
    return Reply(ERROR_MEANING[status], JSON, OperationOutcome, RETRY_AFTER if status == 429 else {})


def _page_error(status: int) -> Reply:
    return _page(PAGE_ERROR_MEANING[status])


CDS = Group("CDS Hooks", _outcome, always=(401, 429), security=("cdsClientJwt",))
API = Group("SMART app API", _outcome)
APP = Group("SMART app", _page_error)
OPERATIONS = Group("Operations")
METRICS = Group("Operations", _outcome, security=("metricsToken",))

ORDER_SELECT_EXAMPLE = {
    "hook": "order-select",
    "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
    "context": {
        "userId": "Practitioner/example",
        "patientId": "example",
        "selections": ["MedicationRequest/draft-1"],
        "draftOrders": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [
                {
                    "resource": {
                        "resourceType": "MedicationRequest",
                        "id": "draft-1",
                        "status": "draft",
                        "intent": "order",
                        "subject": {"reference": "Patient/example"},
                        "medicationCodeableConcept": {
                            "coding": [
                                {
                                    "system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                    "code": "860975",
                                    "display": "metformin 500 MG Oral Tablet",
                                }
                            ]
                        },
                    }
                }
            ],
        },
    },
    "prefetch": {
        "patient": {"resourceType": "Patient", "id": "example", "birthDate": "1950-01-01"},
        "medications": {"resourceType": "Bundle", "type": "searchset", "entry": []},
        "renalFunction": {"resourceType": "Bundle", "type": "searchset", "entry": []},
        "allergies": {"resourceType": "Bundle", "type": "searchset", "entry": []},
        "conditions": {"resourceType": "Bundle", "type": "searchset", "entry": []},
    },
}

ROUTES: dict[str, Operation] = {
    "cds_hooks.discovery": Operation(
        "discovery", "CDS Hooks discovery", CDS, {200: _json("The services offered", Discovery)}
    ),
    "cds_hooks.call_service": Operation(
        "callService",
        "Call a CDS service (a hook)",
        CDS,
        {200: _json("Cards (possibly none)", CardsResponse)},
        errors=(400, 404, 412, 413, 415),
        body=Body(HookRequest, example=ORDER_SELECT_EXAMPLE),
    ),
    "cds_hooks.feedback": Operation(
        "feedback",
        "Report what the clinician did with cards (accepted / overridden)",
        CDS,
        {200: Reply("Stored (idempotent: a resend is stored once)")},
        errors=(400, 404, 413, 415),
        body=Body(FeedbackRequest),
    ),
    "api.models": Operation("listModels", "The model catalogue", API, {200: _json("Every model", ModelList)}),
    "api.model": Operation(
        "getModel",
        "One model: status, policy, HTI-1 source attributes, change history",
        API,
        {200: _json("The model", ModelDetail)},
        errors=(404,),
    ),
    "api.model_status": Operation(
        "setModelStatus",
        "Change control: set a model version's status (cmio or safety-officer)",
        API,
        {200: _json("The change as recorded", StatusChange)},
        errors=(400, 401, 403, 404, 409),
        body=Body(StatusChangeRequest),
        headers=("X-CSRF-Token",),
        description="Signed-in SMART session with the X-CSRF-Token of that session; the approver is "
        "the session's fhirUser. Recorded in the ledger and written back as AuditEvent E9 + Provenance.",
    ),
    "api.model_proposal": Operation(
        "proposeModelVersion",
        "Propose a shadow version for active (cmio or safety-officer); a different governor approves",
        API,
        {201: _json("The proposal as recorded", PromotionAct)},
        errors=(400, 401, 403, 404, 409),
        body=Body(ProposalRequest),
        headers=("X-CSRF-Token",),
        description="The proposer is the session's fhirUser; ledgered, written back as AuditEvent.",
    ),
    "api.approve_proposal": Operation(
        "approveProposal",
        "Approve a pending proposal: the version goes active, the one it replaces is retired",
        API,
        {200: _json("The approval as recorded", PromotionAct)},
        errors=(400, 401, 403, 404, 409),
        body=Body(ActRequest),
        headers=("X-CSRF-Token",),
        description="409 when the signed-in governor proposed it: a different governor must approve.",
    ),
    "api.withdraw_proposal": Operation(
        "withdrawProposal",
        "Withdraw a pending proposal",
        API,
        {200: _json("The withdrawal as recorded", PromotionAct)},
        errors=(400, 401, 403, 404, 409),
        body=Body(ActRequest),
        headers=("X-CSRF-Token",),
    ),
    "api.model_rollback": Operation(
        "rollBackModel",
        "Incident action: undo the model's last promotion at once (one governor)",
        API,
        {200: _json("The rollback as recorded", PromotionAct)},
        errors=(400, 401, 403, 404, 409),
        body=Body(ActRequest),
        headers=("X-CSRF-Token",),
        description="409 when no promotion replaced an active version since the last rollback.",
    ),
    "pages.catalogue": Operation(
        "appCatalogue",
        "Model catalogue (any signed-in role)",
        APP,
        {200: _page("The catalogue")},
        errors=(401, 403),
    ),
    "pages.audit_trail": Operation(
        "appAuditTrail",
        "Audit trail: ledger entries and chain verification (auditor, cmio, safety-officer)",
        APP,
        {200: _page("The audit trail")},
        errors=(401, 403),
        query=("kind", "since", "until", "model", "version"),
    ),
    "pages.dashboard": Operation(
        "appSafetyDashboard",
        "Safety dashboard from safety_summary() (cmio, safety-officer, auditor)",
        APP,
        {200: _page("The dashboard")},
        errors=(401, 403),
    ),
    "pages.report_form": Operation(
        "appSafetyReportForm",
        "Safety-event report form (clinician, cmio, safety-officer)",
        APP,
        {200: _page("The form")},
        errors=(401, 403),
        query=("card", "reported"),
    ),
    "pages.report": Operation(
        "appSafetyReport",
        "Report a safety event against a card (form post with the session's csrf_token)",
        APP,
        {303: _redirect("To the form, with the recorded event's number")},
        errors=(400, 401, 403, 404),
        body=_form("csrf_token", "card", "category", "severity", "occurred", "description"),
    ),
    "pages.patient_activity": Operation(
        "appPatientActivity",
        "Patient AI activity: our cards for the patient in context, the EHR's Provenance "
        "and AuditEvents (any role)",
        APP,
        {200: _page("The patient's AI activity")},
        errors=(401, 403),
    ),
    "pages.review": Operation(
        "appReview",
        "Clinician review page of a held high-risk draft (clinician, cmio)",
        APP,
        {200: _page("The draft and its sources, or the decision")},
        errors=(401, 403, 404),
    ),
    "pages.sign_review": Operation(
        "appReviewSign",
        "Sign the edited draft: decision recorded, DocumentReference + AI-Provenance enqueued",
        APP,
        {303: _redirect("To the review page")},
        errors=(400, 401, 403, 404, 409),
        body=_form("csrf_token", "text"),
    ),
    "pages.reject_review": Operation(
        "appReviewReject",
        "Reject the draft with a reason: decision recorded, nothing written to the EHR",
        APP,
        {303: _redirect("To the review page")},
        errors=(400, 401, 403, 404, 409),
        body=_form("csrf_token", "reason", "comment"),
    ),
    "pages.model_comparison": Operation(
        "appModelComparison",
        "A shadow version against the active one on the calls both ran on: agreement, differing "
        "calls, confidence, latency, decisions on the cards the shadow would drop (cmio, "
        "safety-officer, auditor)",
        APP,
        {200: _page("The comparison, or why there is none yet")},
        errors=(401, 403, 404),
        query=("shadow", "limit"),
    ),
    "pages.hook_call": Operation(
        "appHookCall",
        "One hook call: every version's card set side by side, with decisions (cmio, safety-officer, "
        "auditor)",
        APP,
        {200: _page("The call's card sets")},
        errors=(401, 403, 404),
    ),
    "smart_launch.launch": Operation(
        "appLaunch",
        "SMART EHR launch (iss + launch), or the start page without them",
        APP,
        {200: _page("The start page"), 303: _redirect("To /app/authorize")},
        errors=(400,),
        query=("iss", "launch"),
    ),
    "smart_launch.standalone": Operation(
        "appStandaloneLaunch",
        "Standalone launch against the configured EHR",
        APP,
        {303: _redirect("To /app/authorize")},
        errors=(400,),
    ),
    "smart_launch.authorize": Operation(
        "appAuthorize",
        "Send the browser to the EHR's authorization endpoint (or offer a new window)",
        APP,
        {200: _page("Cookies blocked: open in a new window"), 303: _redirect("To the EHR")},
        errors=(400, 502),
        query=("state", "window"),
    ),
    "smart_launch.callback": Operation(
        "appCallback",
        "SMART redirect URI: code exchange, id_token check, session",
        APP,
        {303: _redirect("To the catalogue")},
        errors=(400, 403),
        query=("state", "code", "error", "error_description"),
    ),
    "smart_launch.logout": Operation(
        "appLogout",
        "Sign out: the server-side tokens are deleted",
        APP,
        {200: _page("Signed out")},
        errors=(403,),
    ),
    "pages.model_card": Operation(
        "modelCardPage",
        "Model card page",
        APP,
        {200: _page("The model card"), 404: _page("No such model")},
    ),
    "static": Operation(
        "staticFile",
        "The app's CSS, scripts and images",
        APP,
        {200: Reply("The file", "*/*"), 404: _page("No such file")},
    ),
    "health.healthz": Operation(
        "healthz", "Liveness: the process answers", OPERATIONS, {200: _json("Alive", Health)}
    ),
    "health.readyz": Operation(
        "readyz",
        "Readiness: database reachable, migrations current, model registry valid",
        OPERATIONS,
        {
            200: _json("Ready for traffic", Readiness),
            503: _json("Not ready; failing checks named", Readiness),
        },
    ),
    "metrics.metrics_endpoint": Operation(
        "metrics",
        "Prometheus metrics (text exposition format)",
        METRICS,
        {
            200: Reply("Metrics", "text/plain", STRING),
            401: Reply(
                "No or wrong bearer token", "text/plain", STRING, {"WWW-Authenticate": {"schema": STRING}}
            ),
            404: Reply("Metrics disabled: COUNTERSIGN_METRICS_TOKEN is not set", "text/plain", STRING),
        },
    ),
    "jwks.key_set": Operation(
        "jwks",
        "Our public keys (JWKS): the Provenance signing key and the SMART client's private_key_jwt keys",
        OPERATIONS,
        {200: _json("Every published key, public members only", JsonWebKeySet)},
    ),
    "jwks.key": Operation(
        "jwk",
        "One published public key, by kid",
        OPERATIONS,
        {
            200: _json("The key, public members only", JsonWebKey),
            404: Reply("No key with this kid", JSON, OperationOutcome),
        },
    ),
    "openapi.openapi_json": Operation(
        "openapi", "This document", OPERATIONS, {200: _json("OpenAPI 3.1 document")}
    ),
}
