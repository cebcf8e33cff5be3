"""The JSON API the SMART app uses: model catalogue, one model with its card and version history."""

from __future__ import annotations

from flask import Blueprint, Response, abort, current_app, jsonify
from sqlalchemy import Engine
from sqlmodel import Session, select
from werkzeug.exceptions import HTTPException

from app.db import DATABASE_KEY
from app.governance.lifecycle import ModelChange, current_status
from app.model_card_text import attribute_rows
from app.registry import ModelCard
from cds_hooks.errors import http_error_response
from smart_launch.blueprint import MODEL_CARDS_KEY

bp = Blueprint("api", __name__, url_prefix="/api")
bp.register_error_handler(HTTPException, http_error_response)


def _engine() -> Engine:
    return current_app.extensions[DATABASE_KEY]


def _summary(card: ModelCard, status: str) -> dict:
    return {
        "id": card.id,
        "version": card.version,
        "name": card.name,
        "status": status,
        "kind": card.kind,
        "intendedUse": card.intended_use,
        "modelCard": card.page_url(current_app.config["COUNTERSIGN"].base_url),
    }


@bp.get("/models")
def models() -> Response:
    with _engine().connect() as connection:
        cards = current_app.extensions[MODEL_CARDS_KEY].values()
        return jsonify({"models": [_summary(card, current_status(connection, card)) for card in cards]})


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
    return jsonify(
        _summary(card, status)
        | {
            "policy": card.policy.model_dump(),
            "sourceAttributes": [
                {"hti1": paragraph, "attribute": wording, "statement": text}
                for paragraph, wording, text in attribute_rows(card)
            ],
            "history": [
                {
                    "action": change.action,
                    "from": change.previous_status,
                    "to": change.status,
                    "approver": change.approver,
                    "role": change.role,
                    "reason": change.reason,
                    "at": change.changed_at.isoformat(),
                }
                for change in history
            ],
        }
    )
