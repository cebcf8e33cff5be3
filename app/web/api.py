"""The JSON API the SMART app uses: model catalogue, one model with its card and version history,
and change control (a model's status), which goes through the governance core like the CLI."""

from __future__ import annotations

from typing import get_args

from flask import Blueprint, Response, abort, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlmodel import Session, select
from werkzeug.exceptions import HTTPException

from app.db import DATABASE_KEY
from app.governance.change_control import ChangeRefused, change_status
from app.governance.lifecycle import ModelChange, current_status
from app.governance.measured import MeasuredPerformance
from app.governance.model_card import MODEL_CARDS_KEY, ModelCard, ModelStatus
from app.governance.model_card_text import attribute_rows
from app.governance.policy import Policy
from cds_hooks.errors import http_error_response
from fhir_profiles.operation_outcome import operation_outcome
from smart_launch.roles import GOVERNORS
from smart_launch.session import current_session, require_role

bp = Blueprint("api", __name__, url_prefix="/api")
TARGET_STATUSES = get_args(ModelStatus)
MAX_REASON = 2000
bp.register_error_handler(HTTPException, http_error_response)


# Documents the body; ``_status_request_problem`` checks it, with messages that name the member.
class StatusChangeRequest(BaseModel):
    """The approver is the signed-in fhirUser, never the body."""

    status: ModelStatus
    reason: str = Field(min_length=1, max_length=MAX_REASON, pattern=r"\S")


class ModelSummary(BaseModel):
    id: str
    version: str
    name: str
    status: ModelStatus
    kind: str
    intendedUse: str
    modelCard: str


class ModelList(BaseModel):
    models: list[ModelSummary]


class SourceAttribute(BaseModel):
    hti1: str
    attribute: str
    statement: str


class RecordedChange(BaseModel):
    """A status change as the ledger records it."""

    model_config = ConfigDict(validate_by_name=True)

    from_: str = Field(alias="from")  # a Python keyword
    to: str
    approver: str
    role: str
    reason: str
    at: str


class HistoryEntry(RecordedChange):
    action: str


class StatusChange(RecordedChange):
    id: str
    version: str


class ModelDetail(ModelSummary):
    policy: Policy
    measured: MeasuredPerformance | None
    sourceAttributes: list[SourceAttribute]
    history: list[HistoryEntry]


def _engine() -> Engine:
    return current_app.extensions[DATABASE_KEY]


def _json(body: BaseModel) -> Response:
    return jsonify(body.model_dump(mode="json", by_alias=True))


def _summary(card: ModelCard, status: str) -> dict:
    """The members of ``ModelSummary``, which ``ModelDetail`` extends."""
    return {
        "id": card.id,
        "version": card.version,
        "name": card.name,
        "status": status,
        "kind": card.kind,
        "intendedUse": card.intended_use,
        "modelCard": card.page_url(current_app.config["COUNTERSIGN"].base_url),
    }


def _recorded(change: ModelChange) -> dict:
    """The members of ``RecordedChange``, shared by the history and the answer to a change."""
    return {
        "from_": change.previous_status,
        "to": change.status,
        "approver": change.approver,
        "role": change.role,
        "reason": change.reason,
        "at": change.changed_at.isoformat(),
    }


@bp.get("/models")
def models() -> Response:
    with _engine().connect() as connection:
        cards = current_app.extensions[MODEL_CARDS_KEY].values()
        summaries = [ModelSummary(**_summary(card, current_status(connection, card))) for card in cards]
    return _json(ModelList(models=summaries))


@bp.get("/models/<model_id>")
def model(model_id: str) -> Response:
    card = current_app.extensions[MODEL_CARDS_KEY].get(model_id)
    if card is None:
        abort(404)
    with _engine().connect() as connection:
        status = current_status(connection, card)
    with Session(_engine()) as session:
        history = session.exec(
            select(ModelChange).where(ModelChange.model_id == card.id).order_by(ModelChange.id)
        ).all()
    return _json(
        ModelDetail(
            **_summary(card, status),
            policy=card.policy,
            measured=card.measured,
            sourceAttributes=[
                SourceAttribute(hti1=paragraph, attribute=wording, statement=text)
                for paragraph, wording, text in attribute_rows(card)
            ],
            history=[HistoryEntry(action=change.action, **_recorded(change)) for change in history],
        )
    )


@bp.post("/models/<model_id>/status")
@require_role(*GOVERNORS, api=True)
def model_status(model_id: str) -> tuple[Response, int]:
    """Set a model version's status; the approver is the signed-in ``fhirUser``, never the body."""
    card = current_app.extensions[MODEL_CARDS_KEY].get(model_id)
    if card is None:
        return _outcome(404, "not-found", f"no model {model_id!r}")
    body = request.get_json(silent=True)
    problem = _status_request_problem(body)
    if problem:
        return _outcome(400, "invalid", problem[1], problem[0])
    session = current_session()
    if session is None or not session.fhir_user or not session.role:
        return _outcome(403, "forbidden", "the signed-in user is not a Practitioner with a role")
    with _engine().connect() as connection:
        previous = current_status(connection, card)
    try:
        change = change_status(
            _engine(),
            card,
            _action(previous, body["status"]),
            approver=session.fhir_user,
            role=session.role,
            reason=body["reason"],
            writeback_target=_writeback_target(session.iss),
        )
    except ChangeRefused as error:
        return _outcome(409, "business-rule", str(error))
    return _json(StatusChange(id=card.id, version=card.version, **_recorded(change))), 200


def _writeback_target(iss: str | None) -> str | None:
    """The EHR the user launched from if we write back to it, else the default write-back server."""
    settings = current_app.config["COUNTERSIGN"]
    return settings.writeback_target(iss) or settings.writeback_target(None)


def _status_request_problem(body: object) -> tuple[str, str] | None:
    """(expression, diagnostics) of the first thing wrong with the request body, if any."""
    if not isinstance(body, dict):
        return "$", "the body must be a JSON object with status and reason"
    if body.get("status") not in TARGET_STATUSES:
        return "status", f"status must be one of {', '.join(TARGET_STATUSES)}"
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        return "reason", "a reason is required"
    if len(reason) > MAX_REASON:
        return "reason", f"the reason must be at most {MAX_REASON} characters"
    return None


def _action(previous: str, target: str) -> str:
    """The change-control action that moves ``previous`` to ``target`` (active: resume or activate)."""
    if target == "active":
        return "resume" if previous == "paused" else "activate"
    return {"shadow": "shadow", "paused": "pause", "retired": "retire"}[target]


def _outcome(status: int, code: str, diagnostics: str, expression: str | None = None) -> tuple[Response, int]:
    body = operation_outcome(code, diagnostics, expression=[expression] if expression else None)
    return jsonify(body), status
