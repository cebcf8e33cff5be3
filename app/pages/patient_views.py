"""Patient AI activity: our record of the cards this patient was shown, beside the Provenance and
AuditEvent resources the EHR holds for the patient (read with the user's own token)."""

from __future__ import annotations

from flask import Blueprint, render_template
from sqlmodel import Session

from app.pages.patient_activity import CardActivity, patient_cards
from app.pages.safety_views import REPORTERS
from fhir_profiles.common import DELIVERY_TAG_SYSTEM
from smart_launch.fhir import SessionEnded, search
from smart_launch.roles import ROLES
from smart_launch.session import current_session, require_role, session_ended, smart_config

SEARCH_COUNT = "50"


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/patient", view_func=patient_activity, methods=["GET"])


@require_role(*ROLES)
def patient_activity():
    row = current_session()
    patient_id = row.context.get("patient")
    if not patient_id:
        return render_template("patient.html", patient_id=None), 200
    with Session(smart_config().engine) as session:
        cards = patient_cards(session, patient_id)
    page = {"_count": SEARCH_COUNT, "_sort": "-_lastUpdated"}
    try:
        provenance = _distinct(
            search(smart_config(), row, "Provenance", page | {"patient": patient_id})
            + search(smart_config(), row, "Provenance", page | {"entity": f"Patient/{patient_id}"})
        )
        audit_events = search(smart_config(), row, "AuditEvent", page | {"patient": patient_id})
    except SessionEnded:
        return session_ended()
    return render_template(
        "patient.html",
        patient_id=patient_id,
        cards=cards,
        provenance=provenance,
        audit_events=audit_events,
        on_ehr=_on_ehr(row.iss or "", cards, provenance),
        can_report=row.role in REPORTERS,
    )


def _on_ehr(base: str, cards: list[CardActivity], provenance: list[dict]) -> dict[str, str]:
    """The EHR's URL of a Provenance we wrote for each record, by the record's delivery-tag prefix."""
    tagged = [
        (tag.get("code", ""), resource.get("id"))
        for resource in provenance
        for tag in resource.get("meta", {}).get("tag", [])
        if tag.get("system") == DELIVERY_TAG_SYSTEM
    ]
    records = [w for card in cards for w in (card.output_write_back, card.decision_write_back) if w]
    return {
        record.tag_prefix: f"{base}/Provenance/{ident}"
        for record in records
        for code, ident in tagged
        if code.startswith(record.tag_prefix) and code.endswith(".provenance")
    }


def _distinct(resources: list[dict]) -> list[dict]:
    """``Provenance?patient`` finds those that target the patient; the AI-Provenance of a card
    targets the card's RequestGroup and names the patient as a source entity, so both are asked."""
    seen: dict[str, dict] = {}
    for resource in resources:
        seen.setdefault(resource.get("id", str(len(seen))), resource)
    return sorted(seen.values(), key=lambda r: r.get("recorded", ""), reverse=True)
