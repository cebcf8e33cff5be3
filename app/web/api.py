"""The JSON API the SMART app uses: the model catalogue, one model with every version, its card and
history, and change control: a version's status, two-person promotion and rollback. Each act goes
through the governance core exactly as the ``countersign model`` commands do."""

from __future__ import annotations

from collections.abc import Callable
from typing import get_args

from flask import Blueprint, Response, abort, current_app, jsonify, request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine
from sqlmodel import Session, select
from werkzeug.exceptions import HTTPException

from app.db import DATABASE_KEY
from app.governance.change_control import MAX_REASON, ChangeRefused, Governor, NotFound, change_status
from app.governance.lifecycle import ModelChange, standing, version_statuses
from app.governance.measured import MeasuredPerformance
from app.governance.model_card import MODEL_CARDS_KEY, ModelCard, ModelRegistry, ModelStatus
from app.governance.model_card_text import attribute_rows
from app.governance.policy import Policy
from app.governance.promotion import ModelPromotion, approve, history, pending, propose, rollback, withdraw
from cds_hooks.errors import http_error_response
from fhir_profiles.operation_outcome import operation_outcome
from smart_launch.fhir import SessionEnded, read
from smart_launch.roles import GOVERNORS
from smart_launch.session import current_session, require_role, smart_config

bp = Blueprint("api", __name__, url_prefix="/api")
TARGET_STATUSES = get_args(ModelStatus)
REASON = Field(min_length=1, max_length=MAX_REASON, pattern=r"\S")
bp.register_error_handler(HTTPException, http_error_response)


# Request models document the bodies; ``_body_problem`` checks them, with messages naming the member.
class StatusChangeRequest(BaseModel):
    """The approver is the signed-in fhirUser, never the body."""

    status: ModelStatus
    reason: str = REASON
    version: str | None = Field(default=None, description="Default: the version that answers now.")


class ProposalRequest(BaseModel):
    """Propose a shadow version for active; the proposer is the signed-in fhirUser."""

    version: str
    reason: str = REASON


class ActRequest(BaseModel):
    """Approve or withdraw a proposal, or roll a model back: the reason is all the body holds."""

    reason: str = REASON


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
    version: str


class StatusChange(RecordedChange):
    id: str
    version: str


class PromotionAct(BaseModel):
    """One act of promotion or rollback, as recorded."""

    id: int
    act: str
    proposal: int | None
    model: str
    version: str
    fromVersion: str | None
    by: str
    byName: str | None
    role: str
    reason: str
    at: str


class ModelDetail(ModelSummary):
    policy: Policy
    measured: MeasuredPerformance | None
    sourceAttributes: list[SourceAttribute]
    versions: list[ModelSummary]
    pendingProposals: list[PromotionAct]
    promotions: list[PromotionAct]
    history: list[HistoryEntry]


def _engine() -> Engine:
    return current_app.extensions[DATABASE_KEY]


def _registry() -> ModelRegistry:
    return current_app.extensions[MODEL_CARDS_KEY]


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


def _act(act: ModelPromotion) -> PromotionAct:
    return PromotionAct(
        id=act.id,
        act=act.act,
        proposal=act.proposal,
        model=act.model_id,
        version=act.model_version,
        fromVersion=act.from_version,
        by=act.by,
        byName=act.by_name,
        role=act.role,
        reason=act.reason,
        at=act.at.isoformat(),
    )


@bp.get("/models")
def models() -> Response:
    registry = _registry()
    summaries = []
    with _engine().connect() as connection:
        for model_id in registry.ids():
            statuses = version_statuses(connection, registry.versions(model_id))
            summaries += [
                ModelSummary(**_summary(card, statuses[card.version])) for card in registry.versions(model_id)
            ]
    return _json(ModelList(models=summaries))


@bp.get("/models/<model_id>")
def model(model_id: str) -> Response:
    """The model as it answers now (``lifecycle.standing``), with every version."""
    versions = _registry().versions(model_id)
    if not versions:
        abort(404)
    with _engine().connect() as connection:
        statuses, lead = standing(connection, versions)
        waiting, acts = pending(connection, model_id), history(connection, model_id)
    with Session(_engine()) as session:
        changes = session.exec(
            select(ModelChange).where(ModelChange.model_id == model_id).order_by(ModelChange.id)
        ).all()
    card = _registry().card(model_id, lead)
    return _json(
        ModelDetail(
            **_summary(card, statuses[card.version]),
            policy=card.policy,
            measured=card.measured,
            sourceAttributes=[
                SourceAttribute(hti1=paragraph, attribute=wording, statement=text)
                for paragraph, wording, text in attribute_rows(card)
            ],
            versions=[ModelSummary(**_summary(c, statuses[c.version])) for c in versions],
            pendingProposals=[_act(act) for act in waiting],
            promotions=[_act(act) for act in acts],
            history=[
                HistoryEntry(action=change.action, version=change.model_version, **_recorded(change))
                for change in changes
            ],
        )
    )


@bp.post("/models/<model_id>/status")
@require_role(*GOVERNORS, api=True)
def model_status(model_id: str) -> tuple[Response, int]:
    """Set a model version's status; the approver is the signed-in ``fhirUser``, never the body."""
    versions = _registry().versions(model_id)
    if not versions:
        return _outcome(404, "not-found", f"no model {model_id!r}")
    body = request.get_json(silent=True)
    problem = _body_problem(body, status=_status_problem, version=_optional_text)
    if problem:
        return _outcome(400, "invalid", problem[1], problem[0])
    card = _version(model_id, versions, body.get("version"))
    if isinstance(card, tuple):
        return card
    action = {"active": "resume", "shadow": "shadow", "paused": "pause", "retired": "retire"}[body["status"]]
    return _governed(
        lambda governor: change_status(
            _engine(),
            _registry(),
            card,
            action,
            governor=governor,
            reason=body["reason"],
            writeback_target=_writeback_target(),
        ),
        lambda change: _json(StatusChange(id=card.id, version=card.version, **_recorded(change))),
    )


@bp.post("/models/<model_id>/proposals")
@require_role(*GOVERNORS, api=True)
def model_proposal(model_id: str) -> tuple[Response, int]:
    """Propose a shadow version for active; a different governor must approve it."""
    versions = _registry().versions(model_id)
    if not versions:
        return _outcome(404, "not-found", f"no model {model_id!r}")
    body = request.get_json(silent=True)
    problem = _body_problem(body, version=_required_text)
    if problem:
        return _outcome(400, "invalid", problem[1], problem[0])
    card = _version(model_id, versions, body["version"])
    if isinstance(card, tuple):
        return card
    return _promotion(propose, card, body["reason"], created=True)


def _promotion_act(act: Callable[..., ModelPromotion], subject: str | int) -> tuple[Response, int]:
    """An act whose body is only a reason: approve or withdraw (subject: a proposal), rollback (a model)."""
    body = request.get_json(silent=True)
    problem = _body_problem(body)
    if problem:
        return _outcome(400, "invalid", problem[1], problem[0])
    return _promotion(act, subject, body["reason"])


def _promotion(
    act: Callable[..., ModelPromotion], subject: object, reason: str, created: bool = False
) -> tuple[Response, int]:
    return _governed(
        lambda governor: act(
            _engine(),
            _registry(),
            subject,
            governor=governor,
            reason=reason,
            writeback_target=_writeback_target(),
        ),
        lambda done: _json(_act(done)),
        created,
    )


def _decide(decision: Callable[..., ModelPromotion], proposal: str) -> tuple[Response, int]:
    if not proposal.isdigit():
        return _outcome(404, "not-found", f"no proposal {proposal!r}")
    return _promotion_act(decision, int(proposal))


@bp.post("/proposals/<proposal_id>/approve")
@require_role(*GOVERNORS, api=True)
def approve_proposal(proposal_id: str) -> tuple[Response, int]:
    """Approve another governor's proposal: the version goes active on every worker within a second."""
    return _decide(approve, proposal_id)


@bp.post("/proposals/<proposal_id>/withdraw")
@require_role(*GOVERNORS, api=True)
def withdraw_proposal(proposal_id: str) -> tuple[Response, int]:
    return _decide(withdraw, proposal_id)


@bp.post("/models/<model_id>/rollback")
@require_role(*GOVERNORS, api=True)
def model_rollback(model_id: str) -> tuple[Response, int]:
    """Incident action: undo the last promotion at once, one governor, no second approval."""
    if model_id not in _registry():
        return _outcome(404, "not-found", f"no model {model_id!r}")
    return _promotion_act(rollback, model_id)


def _governed(
    act: Callable[[Governor], object], answer: Callable, created: bool = False
) -> tuple[Response, int]:
    """Run a change-control act as the signed-in governor: 409 with the reason when refused."""
    governor = _governor()
    if governor is None:
        return _outcome(403, "forbidden", "the signed-in user is not a Practitioner with a role")
    try:
        done = act(governor)
    except NotFound as error:
        return _outcome(404, "not-found", str(error))
    except ChangeRefused as error:
        return _outcome(409, "business-rule", str(error))
    return answer(done), 201 if created else 200


def _governor() -> Governor | None:
    """The signed-in user, with their name read from the EHR when it answers (for the audit trail)."""
    session = current_session()
    if session is None or not session.fhir_user or not session.role:
        return None
    return Governor(session.fhir_user, session.role, _practitioner_name(session))


def _practitioner_name(session) -> str | None:
    try:
        practitioner = read(smart_config(), session, session.fhir_user) or {}
    except (SessionEnded, OSError, ValueError):
        return None
    names = practitioner.get("name") or [{}]
    name = names[0] if isinstance(names[0], dict) else {}
    parts = [*name.get("prefix", []), *name.get("given", []), name.get("family", "")]
    text = name.get("text") or " ".join(part for part in parts if isinstance(part, str) and part)
    return text or None


def _version(
    model_id: str, versions: list[ModelCard], version: str | None
) -> ModelCard | tuple[Response, int]:
    """The named version; without one, the version that answers now (``lifecycle.standing``)."""
    if version is None:
        with _engine().connect() as connection:
            version = standing(connection, versions).lead
    card = next((c for c in versions if c.version == version), None)
    return card or _outcome(404, "not-found", f"{model_id} has no version {version!r}", "version")


def _writeback_target() -> str | None:
    """The EHR the user launched from if we write back to it, else the default write-back server."""
    settings = current_app.config["COUNTERSIGN"]
    session = current_session()
    return settings.writeback_target(session.iss if session else None) or settings.writeback_target(None)


def _status_problem(value: object) -> str | None:
    return None if value in TARGET_STATUSES else f"status must be one of {', '.join(TARGET_STATUSES)}"


def _required_text(value: object) -> str | None:
    return None if isinstance(value, str) and value.strip() else "a version is required"


def _optional_text(value: object) -> str | None:
    return None if value is None or isinstance(value, str) else "the version must be a string"


def _body_problem(body: object, **members: Callable[[object], str | None]) -> tuple[str, str] | None:
    """(expression, diagnostics) of the first thing wrong with a JSON body that needs a reason."""
    if not isinstance(body, dict):
        return "$", f"the body must be a JSON object with {', '.join([*members, 'reason'])}"
    for name, check in members.items():
        problem = check(body.get(name))
        if problem:
            return name, problem
    reason = body.get("reason")
    if not isinstance(reason, str) or not reason.strip():
        return "reason", "a reason is required"
    if len(reason) > MAX_REASON:
        return "reason", f"the reason must be at most {MAX_REASON} characters"
    return None


def _outcome(status: int, code: str, diagnostics: str, expression: str | None = None) -> tuple[Response, int]:
    body = operation_outcome(code, diagnostics, expression=[expression] if expression else None)
    return jsonify(body), status
