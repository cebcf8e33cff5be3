"""The app's pages under ``/app``: model catalogue, model card (with change control), audit trail;
the safety dashboard, patient AI activity and review pages register from their own modules.

Every page declares who may see it; the SMART launch that signs users in is ``smart_launch``'s.
"""

from __future__ import annotations

from datetime import date

from flask import Blueprint, abort, current_app, g, render_template, request, url_for
from sqlalchemy import Connection

from app.audit.ledger import verify_database
from app.audit.trail import TrailFilter, entries, filter_choices, kinds
from app.governance.lifecycle import standing
from app.governance.model_card import MODEL_CARDS_KEY, ModelCard
from app.governance.model_card_text import attribute_rows, figure
from app.governance.promotion import history, pending, undoable_promotion
from app.pages import comparison_views, patient_views, review_views, safety_views
from smart_launch.config import URL_PREFIX
from smart_launch.fhir import SessionEnded, read
from smart_launch.roles import GOVERNORS, ROLES
from smart_launch.session import current_session, require_role, smart_config

bp = Blueprint("pages", __name__, url_prefix=URL_PREFIX, template_folder="templates")
Listed = list[tuple[ModelCard, str]]
AUDIT_READERS = ("auditor", "cmio", "safety-officer")
safety_views.register(bp)
patient_views.register(bp)
review_views.register(bp)
comparison_views.register(bp)


def landing(context: dict) -> str:
    """Where a user lands after sign-in: the draft the EHR asked to review, else the catalogue."""
    card = review_views.review_card(context.get("appContext"))
    return url_for("pages.review", card_uuid=card) if card else url_for("pages.catalogue")


def _banner() -> dict | None:
    """Patient banner for an EHR launch, unless the EHR said it shows one itself."""
    row = current_session()
    if row is None or row.context.get("launch") != "ehr" or row.context.get("need_patient_banner") is False:
        return None
    patient_id = row.context.get("patient")
    if not patient_id:
        return {"missing": True}
    try:
        patient = read(smart_config(), row, f"Patient/{patient_id}")
    except SessionEnded:
        g.smart_session = None
        return None
    return {"missing": False, "patient": patient or {}}


@bp.get("/")
@require_role(*ROLES)
def catalogue() -> str:
    """One row per model: the version that answers now, and every version with its status."""
    registry = current_app.extensions[MODEL_CARDS_KEY]
    models = []
    with smart_config().engine.connect() as connection:
        for model_id in registry.ids():
            listed, lead = _versions(connection, registry.versions(model_id))
            models.append((lead, listed))
    return render_template("catalogue.html", models=models, banner=_banner())


def _versions(connection: Connection, versions: list[ModelCard]) -> tuple[Listed, ModelCard]:
    """Each version with its status, and the version that answers now (as the hook path chooses)."""
    statuses, lead = standing(connection, versions)
    listed = [(card, statuses[card.version]) for card in versions]
    return listed, next(card for card in versions if card.version == lead)


@bp.get("/models/<model_id>")
def model_card(model_id: str) -> str:
    """Public: HTI-1 source attributes are disclosure for every user; change control needs a role.
    Shows the version asked for (``?version=``), else the one that answers now."""
    registry = current_app.extensions[MODEL_CARDS_KEY]
    versions = registry.versions(model_id)
    if not versions:
        abort(404)
    row = current_session()
    with smart_config().engine.connect() as connection:
        listed, lead = _versions(connection, versions)
        waiting, acts = pending(connection, model_id), history(connection, model_id)
        undoable = undoable_promotion(connection, registry, model_id)
    card = registry.card(model_id, request.args.get("version") or "") or lead
    return render_template(
        "model_card.html",
        card=card,
        status=dict(listed)[card],
        versions=listed,
        pending=waiting,
        promotions=acts,
        undoable=undoable,
        attributes=attribute_rows(card),
        figure=figure,
        can_change=bool(row and row.role in GOVERNORS),
    )


@bp.get("/audit")
@require_role(*AUDIT_READERS)
def audit_trail() -> str:
    """Each entry as a sentence, its raw content a click away; filters by kind, date, model, version."""
    trail_filter = TrailFilter(
        kind=request.args.get("kind") or None,
        since=_date(request.args.get("since")),
        until=_date(request.args.get("until")),
        model=request.args.get("model") or None,
        version=request.args.get("version") or None,
    )
    with smart_config().engine.connect() as connection:
        verification = verify_database(connection)
        rows = entries(connection, trail_filter)
        all_kinds = kinds(connection)
    models, versions = filter_choices(current_app.extensions[MODEL_CARDS_KEY], trail_filter)
    return render_template(
        "audit.html",
        rows=rows,
        kinds=all_kinds,
        models=models,
        versions=versions,
        verification=verification,
        trail_filter=trail_filter,
    )


def _date(value: str | None) -> date | None:
    try:
        return date.fromisoformat(value) if value else None
    except ValueError:
        return None
