"""The OpenAPI 3.1 description of every HTTP endpoint, served at ``/openapi.json``.

Request bodies of the CDS Hooks calls are generated from the same pydantic models that validate
them, so the document cannot drift from the parser; a test compares its paths with the app's
registered routes, and schemathesis checks the live responses against it.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Flask, Response, current_app, jsonify
from pydantic import BaseModel

from cds_hooks.models import FeedbackRequest, HookRequest

bp = Blueprint("openapi", __name__)
DOCUMENT_KEY = "openapi_document"
REF = "#/components/schemas/{model}"
OUTCOME = {"$ref": "#/components/schemas/OperationOutcome"}
EXAMPLE_SERVICE = "medication-safety"


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(current_app.extensions[DOCUMENT_KEY])


def init_app(app: Flask, public_base_url: str) -> None:
    app.register_blueprint(bp)
    app.extensions[DOCUMENT_KEY] = document(public_base_url)


def document(public_base_url: str) -> dict:
    schemas = {**_model_schemas(HookRequest, FeedbackRequest), **SCHEMAS}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Countersign",
            "version": "0.1.0",
            "description": "Governed AI decision support: a CDS Hooks 2.0.1 service, its feedback "
            "endpoint, the JSON API of the SMART app, the app's pages, and operations endpoints.",
        },
        "servers": [{"url": public_base_url}],
        "paths": PATHS,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "cdsClientJwt": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": "A JWT signed by a trusted CDS client, aud = the exact URL called, "
                    "a fresh jti per call (CDS Hooks 2.0.1 §3.2).",
                }
            },
        },
    }


def _model_schemas(*models: type[BaseModel]) -> dict[str, Any]:
    """Component schemas from the request models, nulls removed (the parser refuses them)."""
    schemas: dict[str, Any] = {}
    for model in models:
        schema = _without_nulls(model.model_json_schema(ref_template=REF))
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    schemas["HookRequest"]["properties"]["hookInstance"]["format"] = "uuid"
    schemas["FeedbackItem"]["properties"]["card"]["format"] = "uuid"
    return schemas


def _without_nulls(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_without_nulls(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    cleaned = {k: _without_nulls(v) for k, v in schema.items() if not (k == "default" and v is None)}
    options = [option for option in cleaned.get("anyOf", []) if option != {"type": "null"}]
    if "anyOf" in cleaned and len(options) == 1:
        del cleaned["anyOf"]
        cleaned.update(options[0])
    return cleaned


def _json(schema: dict, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, dict]:
    return {str(status): _json(OUTCOME, ERROR_MEANING[status]) for status in statuses}


def _html(description: str) -> dict:
    return {"description": description, "content": {"text/html": {"schema": {"type": "string"}}}}


def _pages(*statuses: int) -> dict[str, dict]:
    return {str(status): _html(PAGE_ERROR_MEANING[status]) for status in statuses}


def _form(fields: tuple[str, ...]) -> dict:
    schema = {"type": "object", "properties": {name: {"type": "string"} for name in fields}}
    return {"required": True, "content": {"application/x-www-form-urlencoded": {"schema": schema}}}


def _redirect(description: str) -> dict:
    return {"description": description, "headers": {"Location": {"schema": {"type": "string"}}}}


PAGE_ERROR_MEANING = {
    400: "The launch cannot go on (page says why and offers a relaunch)",
    401: "Not signed in: the launch page",
    403: "Signed in without the role, or the EHR refused",
    502: "The EHR's sign-in service could not be reached",
    404: "Nothing to show: no such card, or nothing held for review on it",
    409: "Already decided, or about a patient other than the one in context",
}


ERROR_MEANING = {
    400: "Invalid request (OperationOutcome names the member)",
    401: "Missing or invalid client JWT, or not signed in",
    403: "Signed in without the role this needs, or a missing CSRF token",
    409: "The change is not allowed in the model's current status",
    404: "Unknown service, card or model",
    405: "Method not allowed",
    412: "Prefetch missing and no way to fetch it",
    413: "Body larger than COUNTERSIGN_MAX_BODY_BYTES",
    415: "Body is not application/json",
    429: "Rate limit: retry after the Retry-After seconds",
}
RATE_LIMITED_HEADERS = {"Retry-After": {"schema": {"type": "string"}, "description": "seconds"}}
SERVICE_ID = {
    "name": "service_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "example": EXAMPLE_SERVICE,
}
MODEL_ID = {
    "name": "model_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "example": EXAMPLE_SERVICE,
}
CARD_UUID = {
    "name": "card_uuid",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "example": "00000000-0000-4000-8000-000000000000",
}
CDS_SECURITY = [{"cdsClientJwt": []}]


def _cds_errors(*statuses: int) -> dict[str, dict]:
    responses = _errors(401, 429, *statuses)
    responses["429"]["headers"] = RATE_LIMITED_HEADERS
    return responses


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

PATHS: dict[str, Any] = {
    "/cds-services": {
        "get": {
            "summary": "CDS Hooks discovery",
            "operationId": "discovery",
            "security": CDS_SECURITY,
            "responses": {
                "200": _json({"$ref": "#/components/schemas/Discovery"}, "The services offered"),
                **_cds_errors(),
            },
        }
    },
    "/cds-services/{service_id}": {
        "post": {
            "summary": "Call a CDS service (a hook)",
            "operationId": "callService",
            "security": CDS_SECURITY,
            "parameters": [SERVICE_ID],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/HookRequest"},
                        "example": ORDER_SELECT_EXAMPLE,
                    }
                },
            },
            "responses": {
                "200": _json({"$ref": "#/components/schemas/CardsResponse"}, "Cards (possibly none)"),
                **_cds_errors(400, 404, 412, 413, 415),
            },
        }
    },
    "/cds-services/{service_id}/feedback": {
        "post": {
            "summary": "Report what the clinician did with cards (accepted / overridden)",
            "operationId": "feedback",
            "security": CDS_SECURITY,
            "parameters": [SERVICE_ID],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/FeedbackRequest"}}},
            },
            "responses": {
                "200": {"description": "Stored (idempotent: a resend is stored once)"},
                **_cds_errors(400, 404, 413, 415),
            },
        }
    },
    "/api/models": {
        "get": {
            "summary": "The model catalogue",
            "operationId": "listModels",
            "responses": {"200": _json({"$ref": "#/components/schemas/ModelList"}, "Every model")},
        }
    },
    "/api/models/{model_id}": {
        "get": {
            "summary": "One model: status, policy, HTI-1 source attributes, change history",
            "operationId": "getModel",
            "parameters": [MODEL_ID],
            "responses": {
                "200": _json({"$ref": "#/components/schemas/ModelDetail"}, "The model"),
                **_errors(404),
            },
        }
    },
    "/api/models/{model_id}/status": {
        "post": {
            "summary": "Change control: set a model version's status (cmio or safety-officer)",
            "operationId": "setModelStatus",
            "description": "Signed-in SMART session with the X-CSRF-Token of that session; the approver is "
            "the session's fhirUser. Recorded in the ledger and written back as AuditEvent E9 + Provenance.",
            "parameters": [
                MODEL_ID,
                {"name": "X-CSRF-Token", "in": "header", "required": False, "schema": {"type": "string"}},
            ],
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["status", "reason"],
                            "properties": {
                                "status": {"enum": ["active", "shadow", "paused", "retired"]},
                                "reason": {"type": "string", "minLength": 1, "maxLength": 2000},
                            },
                        }
                    }
                },
            },
            "responses": {
                "200": _json({"type": "object"}, "The change as recorded"),
                **_errors(400, 401, 403, 404, 409),
            },
        }
    },
    "/app/": {
        "get": {
            "summary": "Model catalogue (any signed-in role)",
            "operationId": "appCatalogue",
            "responses": {"200": _html("The catalogue"), **_pages(401, 403)},
        }
    },
    "/app/audit": {
        "get": {
            "summary": "Audit trail: ledger entries and chain verification (auditor, cmio, safety-officer)",
            "operationId": "appAuditTrail",
            "parameters": [
                {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                for name in ("kind", "since", "until")
            ],
            "responses": {"200": _html("The audit trail"), **_pages(401, 403)},
        }
    },
    "/app/safety": {
        "get": {
            "summary": "Safety dashboard from safety_summary() (cmio, safety-officer, auditor)",
            "operationId": "appSafetyDashboard",
            "responses": {"200": _html("The dashboard"), **_pages(401, 403)},
        }
    },
    "/app/safety/report": {
        "get": {
            "summary": "Safety-event report form (clinician, cmio, safety-officer)",
            "operationId": "appSafetyReportForm",
            "parameters": [
                {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                for name in ("card", "reported")
            ],
            "responses": {"200": _html("The form"), **_pages(401, 403)},
        },
        "post": {
            "summary": "Report a safety event against a card (form post with the session's csrf_token)",
            "operationId": "appSafetyReport",
            "requestBody": _form(("csrf_token", "card", "category", "severity", "occurred", "description")),
            "responses": {
                "303": _redirect("To the form, with the recorded event's number"),
                **_pages(400, 401, 403, 404),
            },
        },
    },
    "/app/patient": {
        "get": {
            "summary": "Patient AI activity: our cards for the patient in context, the EHR's Provenance "
            "and AuditEvents (any role)",
            "operationId": "appPatientActivity",
            "responses": {"200": _html("The patient's AI activity"), **_pages(401, 403)},
        }
    },
    "/app/reviews/{card_uuid}": {
        "get": {
            "summary": "Clinician review page of a held high-risk draft (clinician, cmio)",
            "operationId": "appReview",
            "parameters": [CARD_UUID],
            "responses": {
                "200": _html("The draft and its sources, or the decision"),
                **_pages(401, 403, 404),
            },
        }
    },
    "/app/reviews/{card_uuid}/sign": {
        "post": {
            "summary": "Sign the edited draft: decision recorded, DocumentReference + AI-Provenance enqueued",
            "operationId": "appReviewSign",
            "parameters": [CARD_UUID],
            "requestBody": _form(("csrf_token", "text")),
            "responses": {"303": _redirect("To the review page"), **_pages(400, 401, 403, 404, 409)},
        }
    },
    "/app/reviews/{card_uuid}/reject": {
        "post": {
            "summary": "Reject the draft with a reason: decision recorded, nothing written to the EHR",
            "operationId": "appReviewReject",
            "parameters": [CARD_UUID],
            "requestBody": _form(("csrf_token", "reason", "comment")),
            "responses": {"303": _redirect("To the review page"), **_pages(400, 401, 403, 404, 409)},
        }
    },
    "/app/launch": {
        "get": {
            "summary": "SMART EHR launch (iss + launch), or the start page without them",
            "operationId": "appLaunch",
            "parameters": [
                {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                for name in ("iss", "launch")
            ],
            "responses": {
                "200": _html("The start page"),
                "303": _redirect("To /app/authorize"),
                **_pages(400),
            },
        }
    },
    "/app/launch/standalone": {
        "post": {
            "summary": "Standalone launch against the configured EHR",
            "operationId": "appStandaloneLaunch",
            "responses": {"303": _redirect("To /app/authorize"), **_pages(400)},
        }
    },
    "/app/authorize": {
        "get": {
            "summary": "Send the browser to the EHR's authorization endpoint (or offer a new window)",
            "operationId": "appAuthorize",
            "parameters": [
                {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                for name in ("state", "window")
            ],
            "responses": {
                "200": _html("Cookies blocked: open in a new window"),
                "303": _redirect("To the EHR"),
                **_pages(400, 502),
            },
        }
    },
    "/app/callback": {
        "get": {
            "summary": "SMART redirect URI: code exchange, id_token check, session",
            "operationId": "appCallback",
            "parameters": [
                {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}
                for name in ("state", "code", "error", "error_description")
            ],
            "responses": {"303": _redirect("To the catalogue"), **_pages(400, 403)},
        }
    },
    "/app/logout": {
        "post": {
            "summary": "Sign out: the server-side tokens are deleted",
            "operationId": "appLogout",
            "responses": {"200": _html("Signed out"), **_pages(403)},
        }
    },
    "/app/models/{model_id}": {
        "get": {
            "summary": "Model card page",
            "operationId": "modelCardPage",
            "parameters": [MODEL_ID],
            "responses": {"200": _html("The model card"), "404": _html("No such model")},
        }
    },
    "/static/{filename}": {
        "get": {
            "summary": "The app's CSS, scripts and images",
            "operationId": "staticFile",
            "parameters": [
                {
                    "name": "filename",
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "example": "countersign.css",
                }
            ],
            "responses": {
                "200": {"description": "The file", "content": {"*/*": {"schema": {}}}},
                "404": _html("No such file"),
            },
        }
    },
    "/healthz": {
        "get": {
            "summary": "Liveness: the process answers",
            "operationId": "healthz",
            "responses": {"200": _json({"$ref": "#/components/schemas/Health"}, "Alive")},
        }
    },
    "/readyz": {
        "get": {
            "summary": "Readiness: database reachable, migrations current, model registry valid",
            "operationId": "readyz",
            "responses": {
                "200": _json({"$ref": "#/components/schemas/Readiness"}, "Ready for traffic"),
                "503": _json({"$ref": "#/components/schemas/Readiness"}, "Not ready; failing checks named"),
            },
        }
    },
    "/metrics": {
        "get": {
            "summary": "Prometheus metrics (text exposition format)",
            "operationId": "metrics",
            "responses": {
                "200": {"description": "Metrics", "content": {"text/plain": {"schema": {"type": "string"}}}}
            },
        }
    },
    "/openapi.json": {
        "get": {
            "summary": "This document",
            "operationId": "openapi",
            "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1 document")},
        }
    },
}

_STRING = {"type": "string"}
_CODING = {"type": "object", "properties": {"system": _STRING, "code": _STRING, "display": _STRING}}
SCHEMAS: dict[str, Any] = {
    "OperationOutcome": {
        "type": "object",
        "required": ["resourceType", "issue"],
        "properties": {
            "resourceType": {"const": "OperationOutcome"},
            "issue": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["severity", "code"],
                    "properties": {
                        "severity": {"enum": ["fatal", "error", "warning", "information"]},
                        "code": _STRING,
                        "diagnostics": _STRING,
                        "expression": {"type": "array", "items": _STRING},
                    },
                },
            },
        },
    },
    "Discovery": {
        "type": "object",
        "required": ["services"],
        "properties": {
            "services": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["hook", "description", "id"],
                    "properties": {
                        "hook": _STRING,
                        "title": _STRING,
                        "description": _STRING,
                        "id": _STRING,
                        "prefetch": {"type": "object", "additionalProperties": _STRING},
                        "usageRequirements": _STRING,
                    },
                },
            }
        },
    },
    "Card": {
        "type": "object",
        "required": ["summary", "indicator", "source"],
        "properties": {
            "uuid": {"type": "string", "format": "uuid"},
            "summary": {"type": "string", "maxLength": 140},
            "detail": _STRING,
            "indicator": {"enum": ["info", "warning", "critical"]},
            "source": {
                "type": "object",
                "required": ["label"],
                "properties": {"label": _STRING, "url": _STRING, "topic": _CODING},
            },
            "suggestions": {"type": "array", "items": {"type": "object", "required": ["label"]}},
            "selectionBehavior": {"enum": ["at-most-one", "any"]},
            "overrideReasons": {"type": "array", "items": _CODING},
            "links": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["label", "url", "type"],
                    "properties": {"label": _STRING, "url": _STRING, "type": {"enum": ["absolute", "smart"]}},
                },
            },
        },
    },
    "CardsResponse": {
        "type": "object",
        "required": ["cards"],
        "properties": {
            "cards": {"type": "array", "items": {"$ref": "#/components/schemas/Card"}},
            "systemActions": {"type": "array"},
        },
    },
    "ModelSummary": {
        "type": "object",
        "required": ["id", "version", "name", "status", "kind", "intendedUse", "modelCard"],
        "properties": {
            "id": _STRING,
            "version": _STRING,
            "name": _STRING,
            "status": {"enum": ["active", "shadow", "paused", "retired"]},
            "kind": _STRING,
            "intendedUse": _STRING,
            "modelCard": _STRING,
        },
    },
    "ModelList": {
        "type": "object",
        "required": ["models"],
        "properties": {"models": {"type": "array", "items": {"$ref": "#/components/schemas/ModelSummary"}}},
    },
    "ModelDetail": {
        "allOf": [
            {"$ref": "#/components/schemas/ModelSummary"},
            {
                "type": "object",
                "required": ["policy", "sourceAttributes", "history"],
                "properties": {
                    "policy": {"type": "object"},
                    "sourceAttributes": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "required": ["hti1", "attribute", "statement"],
                            "properties": {"hti1": _STRING, "attribute": _STRING, "statement": _STRING},
                        },
                    },
                    "history": {"type": "array", "items": {"type": "object"}},
                },
            },
        ]
    },
    "Health": {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}},
    "Readiness": {
        "type": "object",
        "required": ["status", "checks"],
        "properties": {
            "status": {"enum": ["ready", "not-ready"]},
            "checks": {
                "type": "object",
                "required": ["database", "migrations", "registry"],
                "additionalProperties": {"enum": ["ok", "failed"]},
            },
        },
    },
}
