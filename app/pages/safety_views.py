"""The safety dashboard and the safety-event report form.

Figures come only from ``safety_summary()``; a report goes through ``report_safety_event`` with
the session's CSRF token and the signed-in ``fhirUser`` as reporter. Refusals name the field; the
free-text description is never logged.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from flask import Blueprint, current_app, redirect, render_template, request, url_for

from app.db import utcnow
from app.pages.charts import bars, rate_chart
from app.safety.dashboard import safety_summary
from app.safety.events import CATEGORIES, SEVERITIES, ReportRefused, report_safety_event
from smart_launch.session import current_session, require_role, smart_config

log = logging.getLogger(__name__)
DASHBOARD_READERS = ("cmio", "safety-officer", "auditor")
REPORTERS = ("clinician", "cmio", "safety-officer")


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/safety", view_func=dashboard, methods=["GET"])
    bp.add_url_rule("/safety/report", view_func=report_form, methods=["GET"])
    bp.add_url_rule("/safety/report", view_func=report, methods=["POST"])


@require_role(*DASHBOARD_READERS)
def dashboard() -> str:
    with smart_config().engine.connect() as connection:
        figures = [model.as_json() for model in safety_summary(connection, utcnow())]
    for model in figures:
        model["rate_chart"] = rate_chart(model["weeks"])
        model["reason_bars"] = bars(model["override_reasons"])
    return render_template(
        "safety.html", figures=figures, can_report=current_session().role in REPORTERS, form=_form({})
    )


@require_role(*REPORTERS)
def report_form() -> str:
    reported = request.args.get("reported", type=int)
    return render_template("safety_report.html", form=_form(request.args), reported=reported)


@require_role(*REPORTERS)
def report():
    row = current_session()
    if request.form.get("csrf_token") != row.csrf_token:
        return _refused(403, "This report did not come from Countersign: reload the page and try again.")
    occurred = _occurred(request.form.get("occurred", ""))
    if occurred is None:
        return _refused(400, "occurred: a date and time (UTC), e.g. 2026-11-23T14:05")
    if not row.fhir_user:
        return _refused(403, "Only a signed-in Practitioner can report a safety event.")
    try:
        event = report_safety_event(
            smart_config().engine,
            card_uuid=request.form.get("card", "").strip(),
            category=request.form.get("category", ""),
            severity=request.form.get("severity", ""),
            description=request.form.get("description", ""),
            reporter=row.fhir_user,
            occurred_at=occurred,
            writeback_target=current_app.config["COUNTERSIGN"].writeback_target,
        )
    except ReportRefused as error:
        log.info("safety event refused: field %s", error.field)
        return _refused(404 if error.field == "card" else 400, str(error))
    log.info("safety event %s reported against card %s", event.id, event.card_uuid)
    return redirect(url_for("pages.report_form", reported=event.id), 303)


def _refused(status: int, message: str) -> tuple[str, int]:
    form = _form(request.form)
    return render_template("safety_report.html", form=form, error=message, reported=None), status


def _form(values) -> dict:
    return {
        "card": values.get("card", ""),
        "category": values.get("category", ""),
        "severity": values.get("severity", ""),
        "occurred": values.get("occurred", ""),
        "description": values.get("description", ""),
        "categories": CATEGORIES,
        "severities": SEVERITIES,
    }


def _occurred(value: str) -> datetime | None:
    """A ``datetime-local`` value, read as UTC (the form says so); a value with a zone keeps it."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
