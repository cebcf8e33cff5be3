"""The app's pages: for now the SMART launch landing page and a read-only model card page."""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template

from app.model_card_text import attribute_rows, figure

bp = Blueprint("smart_launch", __name__, url_prefix="/app", template_folder="templates")
MODEL_CARDS_KEY = "model_cards"


@bp.get("/launch")
def launch() -> str:
    return render_template("launch.html")


@bp.get("/models/<model_id>")
def model_card(model_id: str) -> str:
    card = current_app.extensions[MODEL_CARDS_KEY].get(model_id)
    if card is None:
        abort(404)
    return render_template("model_card.html", card=card, attributes=attribute_rows(card), figure=figure)
