"""The clinician review page for a held high-risk draft: the draft beside the sources it cites
(read from the EHR with the user's token), edited and signed, or rejected with a reason.

Nothing reaches the EHR from this page except through the governance core's outbox, and only
after a signature.
"""

from __future__ import annotations

import json
import logging
import re

from flask import Blueprint, current_app, redirect, render_template, request, url_for
from sqlmodel import Session

from app.review.checkpoint import REJECTION_REASONS, HeldDraft, ReviewRefused, held_draft, reject, sign
from smart_launch.fhir import SessionEnded, read
from smart_launch.session import current_session, require_role, session_ended, smart_config

log = logging.getLogger(__name__)
REVIEWERS = ("clinician", "cmio")
CARD_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_SOURCES = 40
FOREIGN_FORM = "This form did not come from Countersign: reload the page."
OTHER_PATIENT = "This draft is about another patient than the one open in your EHR; nothing was recorded."


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/reviews/<card_uuid>", view_func=review, methods=["GET"])
    bp.add_url_rule("/reviews/<card_uuid>/sign", view_func=sign_review, methods=["POST"])
    bp.add_url_rule("/reviews/<card_uuid>/reject", view_func=reject_review, methods=["POST"])


@require_role(*REVIEWERS)
def review(card_uuid: str):
    draft = _draft(card_uuid)
    return _page(draft) if draft else _nothing_held()


@require_role(*REVIEWERS)
def sign_review(card_uuid: str):
    draft, refusal = _checked(card_uuid)
    if refusal:
        return refusal
    try:
        sign(
            smart_config().engine,
            card_uuid,
            request.form.get("text", ""),
            reviewer=current_session().fhir_user,
            writeback_target=current_app.config["COUNTERSIGN"].writeback_target,
        )
    except ReviewRefused as error:
        return _page(draft, error=str(error), status=error.status)
    log.info("held draft on card %s signed", card_uuid)
    return redirect(url_for("pages.review", card_uuid=card_uuid), 303)


@require_role(*REVIEWERS)
def reject_review(card_uuid: str):
    draft, refusal = _checked(card_uuid)
    if refusal:
        return refusal
    try:
        reject(
            smart_config().engine,
            card_uuid,
            request.form.get("reason", ""),
            request.form.get("comment", ""),
            reviewer=current_session().fhir_user,
        )
    except ReviewRefused as error:
        return _page(draft, error=str(error), status=error.status)
    log.info("held draft on card %s rejected", card_uuid)
    return redirect(url_for("pages.review", card_uuid=card_uuid), 303)


def _checked(card_uuid: str):
    """The draft, or the page that refuses: nothing held, wrong CSRF token, no Practitioner, a
    patient other than the one open in the EHR."""
    draft = _draft(card_uuid)
    if draft is None:
        return None, _nothing_held()
    row = current_session()
    if request.form.get("csrf_token") != row.csrf_token:
        return draft, _page(draft, error=FOREIGN_FORM, status=403)
    if not row.fhir_user:
        return draft, _page(draft, error="Only a signed-in Practitioner can review a draft.", status=403)
    if _other_patient(draft):
        return draft, _page(draft, error=OTHER_PATIENT, status=409)
    return draft, None


def _draft(card_uuid: str) -> HeldDraft | None:
    with Session(smart_config().engine) as session:
        return held_draft(session, card_uuid)


def _nothing_held() -> tuple[str, int]:
    message = "No AI draft is waiting for review on this card."
    return render_template("problem.html", heading="Nothing to review", message=message), 404


def _other_patient(draft: HeldDraft) -> bool:
    in_context = current_session().context.get("patient")
    return bool(in_context) and in_context != draft.patient_id


def _page(draft: HeldDraft, *, error: str | None = None, status: int = 200):
    row = current_session()
    other_patient = _other_patient(draft)
    sources: list[tuple[str, dict | None]] = []
    if not other_patient:
        try:
            sources = [(ref, read(smart_config(), row, ref)) for ref in draft.evidence_refs[:MAX_SOURCES]]
        except SessionEnded:
            return session_ended()
    text = request.form.get("text", draft.text) if request.method == "POST" else draft.text
    return render_template(
        "review.html",
        draft=draft,
        sources=sources,
        other_patient=other_patient,
        text=text,
        reasons=REJECTION_REASONS,
        error=error,
    ), status


def review_card(app_context: object) -> str | None:
    """The card to review when the EHR's ``appContext`` (a JSON string) asks for one, else None."""
    if isinstance(app_context, str):
        try:
            app_context = json.loads(app_context)
        except ValueError:
            return None
    if not isinstance(app_context, dict) or app_context.get("review") is not True:
        return None
    card = app_context.get("card")
    return card if isinstance(card, str) and CARD_UUID.match(card) else None
