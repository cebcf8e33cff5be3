"""HTTP surface of the sandbox EHR: pages for the clinician, a JSON API for its script, the JWKS."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from fhir_profiles.operation_outcome import operation_outcome
from sandbox.ehr.chart import display_name, dosage_text, load_chart
from sandbox.ehr.fhir_store import FhirStoreError
from sandbox.ehr.launcher import LaunchRefused
from sandbox.ehr.orders import ORDERABLES
from sandbox.ehr.synthetic.cohort import scenario_of, scenarios
from sandbox.ehr.workflow import SandboxEhr, WorkflowError

EHR_KEY = "sandbox_ehr"
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
UUID = re.compile(r"^[0-9a-fA-F-]{8,64}$")
ISSUE_TYPE = {400: "invalid", 404: "not-found", 409: "conflict", 415: "not-supported"}

bp = Blueprint("sandbox_ehr", __name__, template_folder="templates")


def _ehr() -> SandboxEhr:
    return current_app.extensions[EHR_KEY]


@bp.errorhandler(WorkflowError)
@bp.errorhandler(LaunchRefused)
def _workflow_error(error: WorkflowError | LaunchRefused) -> tuple[Response, int]:
    expression = [error.location] if error.location else None
    body = operation_outcome(ISSUE_TYPE.get(error.status, "exception"), str(error), expression=expression)
    return jsonify(body), error.status


@bp.app_context_processor
def _launch_users() -> dict:
    """The header's user switch: whom the EHR signs in when it launches a SMART app."""
    launcher = current_app.config["SANDBOX_EHR"].launcher
    return {"launch_users": launcher.users if launcher else ()}


@bp.url_value_preprocessor
def _check_ids(_endpoint: str | None, values: dict | None) -> None:
    """Ids from the URL go into FHIR queries: refuse anything that is not a FHIR id or a uuid."""
    values = values or {}
    if "patient_id" in values and not FHIR_ID.match(values["patient_id"]):
        raise WorkflowError(400, "not a FHIR id", "patient_id")
    if "card_uuid" in values and not UUID.match(values["card_uuid"]):
        raise WorkflowError(400, "not a card uuid", "card")


@bp.get("/")
def patient_list() -> str:
    try:
        patients = _ehr().store.search("Patient", _sort="-_lastUpdated")  # the 200 most recently active
    except FhirStoreError as error:
        raise WorkflowError(502, str(error)) from None
    stories = scenarios()
    rows = sorted(
        (
            {"id": p["id"], "name": display_name(p), "patient": p, "scenario": scenario_of(p["id"], stories)}
            for p in patients
        ),
        key=lambda row: row["name"],
    )
    return render_template("sandbox_ehr/patients.html", rows=rows)


@bp.get("/patients/<patient_id>")
def chart(patient_id: str) -> str:
    ehr = _ehr()
    loaded = ehr.guarded_read(lambda: load_chart(ehr.store, patient_id))
    return render_template(
        "sandbox_ehr/chart.html",
        chart=loaded,
        orderables=ORDERABLES,
        dosage_text=dosage_text,
    )


@bp.get("/.well-known/jwks.json")
def jwks() -> Response:
    return jsonify(current_app.config["SANDBOX_EHR"].identity.jwks())


@bp.post("/api/patients/<patient_id>/patient-view")
def patient_view(patient_id: str) -> Response:
    return jsonify(_ehr().open_chart(patient_id))


@bp.post("/api/patients/<patient_id>/drafts")
def add_draft(patient_id: str) -> Response:
    orderable = _body().get("orderable")
    if orderable not in ORDERABLES:
        raise WorkflowError(400, "choose an order from the order list", "orderable")
    return jsonify(_ehr().draft(patient_id, orderable))


@bp.get("/api/patients/<patient_id>/orders")
def orders(patient_id: str) -> Response:
    ehr = _ehr()
    return jsonify(
        {
            "drafts": [_order_row(o) for o in ehr.drafts(patient_id)],
            "medications": [_order_row(o) for o in ehr.medications(patient_id)],
        }
    )


@bp.post("/api/patients/<patient_id>/sign")
def sign(patient_id: str) -> Response:
    return jsonify(_ehr().sign(patient_id))


@bp.post("/api/patients/<patient_id>/sign/complete")
def complete_signing(patient_id: str) -> Response:
    return jsonify({"signed": [_order_row(o) for o in _ehr().complete_signing(patient_id)]})


@bp.post("/api/patients/<patient_id>/discharge")
def discharge(patient_id: str) -> Response:
    return jsonify(_ehr().discharge(patient_id))


@bp.post("/api/patients/<patient_id>/discharge/complete")
def complete_discharge(patient_id: str) -> Response:
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    encounter = _ehr().complete_discharge(patient_id, now)
    return jsonify({"encounter": encounter["id"], "status": encounter["status"]})


@bp.post("/api/cards/<card_uuid>/accept")
def accept(card_uuid: str) -> Response:
    suggestion = _body().get("suggestion")
    if not isinstance(suggestion, str) or not UUID.match(suggestion):
        raise WorkflowError(400, "name the suggestion to accept by its uuid", "suggestion")
    return jsonify(_ehr().accept(card_uuid, suggestion))


@bp.post("/api/cards/<card_uuid>/override")
def override(card_uuid: str) -> Response:
    body = _body()
    reason, comment = body.get("reason"), body.get("comment", "")
    if (reason is not None and not isinstance(reason, str)) or not isinstance(comment, str):
        raise WorkflowError(400, "reason and comment must be strings", "reason")
    if len(comment) > 1000:
        raise WorkflowError(400, "the comment is limited to 1,000 characters", "comment")
    _ehr().override(card_uuid, reason or None, comment)
    return jsonify({"overridden": card_uuid})


@bp.post("/api/patients/<patient_id>/smart-launch")
def smart_launch(patient_id: str) -> Response:
    """A launch context for this chart and the chosen user; the page opens the answer in its iframe."""
    launcher = current_app.config["SANDBOX_EHR"].launcher
    if launcher is None:
        raise WorkflowError(409, "no SMART app is registered with this EHR")
    body = _body()
    user, app_url, encounter = body.get("user"), body.get("app"), body.get("encounter")
    app_context = body.get("appContext")
    if app_context is not None and not (isinstance(app_context, str) and len(app_context) <= 2000):
        raise WorkflowError(400, "appContext is a string of at most 2,000 characters", "appContext")
    if encounter is not None and not (isinstance(encounter, str) and FHIR_ID.match(encounter)):
        raise WorkflowError(400, "not a FHIR id", "encounter")
    if not isinstance(user, str) or (app_url is not None and not isinstance(app_url, str)):
        raise WorkflowError(400, "user and app must be strings", "user")
    ehr = _ehr()
    ehr.guarded_read(lambda: ehr.store.read("Patient", patient_id))
    return jsonify({"url": launcher.launch_url(user, patient_id, encounter, app_url, app_context)})


def _body() -> dict:
    if request.mimetype != "application/json":
        raise WorkflowError(415, "send application/json")
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise WorkflowError(400, "the body must be a JSON object")
    return body


def _order_row(order: dict) -> dict:
    concept = order.get("medicationCodeableConcept") or {}
    labels = [s.get("code") for s in (order.get("meta") or {}).get("security", ())]
    return {
        "id": order["id"],
        "medication": concept.get("text", ""),
        "dosage": dosage_text(order),
        "status": order.get("status"),
        "aiAsserted": "AIAST" in labels,
    }
