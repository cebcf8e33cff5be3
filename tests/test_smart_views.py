"""The safety dashboard, patient AI activity and clinician review pages, through a real SMART launch
(mock EHR in front of the FHIR test server), the real CDS Hooks paths and a real database."""

from __future__ import annotations

import base64
import logging
import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from statistics import median

import pytest
from sqlalchemy import text

from app import DATABASE_KEY, WORKER_KEY
from app.db import as_utc, utcnow
from sandbox.mock_ehr_auth import MockEhr
from tests.smart_helpers import CALLBACK, mock_ehr, smart_settings
from tests.views_helpers import csrf_of, discharge_card, launch
from tests.writeback_helpers import (
    accept_and_apply,
    drain,
    order_sign_session,
    override,
    put,
    search,
    writeback_settings,
)

PAGES = ("/app/safety", "/app/patient", "/app/safety/report")


@pytest.fixture
def ehr(fhir_server: str) -> Iterator[MockEhr]:
    with mock_ehr(fhir_server, CALLBACK) as running:
        yield running


@pytest.fixture
def smart_app(make_app, ehr, fhir_server):
    return make_app(
        **smart_settings(ehr), **writeback_settings(fhir_server), writeback_default_server=fhir_server
    )


def signed_in(smart_app, ehr, user: str, patient: str | None = None, app_context: dict | None = None):
    client = smart_app.test_client()
    landed = launch(client, ehr, user, patient, app_context)
    assert landed.status_code == 303, landed.get_data(as_text=True)
    return client, landed.headers["Location"]


def rows(smart_app, sql: str, **params) -> list:
    with smart_app.extensions[DATABASE_KEY].connect() as connection:
        return list(connection.execute(text(sql), params))


def figure(page: str, model: str, name: str) -> str:
    section = page.split(f">{model}</h2>")[1].split("</section>")[0]
    return re.search(rf'data-figure="{name}">([^<]*)<', section).group(1).strip()


def _at(value) -> datetime:
    """SQLite hands a raw SQL timestamp back as text."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def report_form(client, csrf: str, **values: str):
    form = {
        "csrf_token": csrf,
        "category": "product-use-error",
        "severity": "moderate",
        "occurred": utcnow().isoformat(),
        "description": "Dose advice followed; patient became drowsy",
    } | values
    return client.post("/app/safety/report", data=form)


def test_anonymous_visitors_get_the_launch_page_and_each_view_admits_only_its_roles(smart_app, ehr):
    anonymous = smart_app.test_client()
    for path in (*PAGES, f"/app/reviews/{'0' * 8}-0000-4000-8000-{'0' * 12}"):
        page = anonymous.get(path)
        assert page.status_code == 401 and "Sign in with your EHR account" in page.get_data(as_text=True)
    clinician, _ = signed_in(smart_app, ehr, "clin-1")
    assert clinician.get("/app/safety").status_code == 403
    assert clinician.get("/app/safety/report").status_code == 200
    auditor, _ = signed_in(smart_app, ehr, "aud-1")
    assert auditor.get("/app/safety").status_code == 200
    assert auditor.get("/app/patient").status_code == 200
    assert auditor.get("/app/safety/report").status_code == 403
    assert auditor.get(f"/app/reviews/{'0' * 8}-0000-4000-8000-{'0' * 12}").status_code == 403
    for user in ("cmio-1", "so-1"):
        governor, _ = signed_in(smart_app, ehr, user)
        assert governor.get("/app/safety").status_code == 200


def test_the_dashboard_figures_equal_those_computed_from_the_raw_records(smart_app, ehr, auth, fhir_server):
    hooks = smart_app.test_client()
    for _ in range(2):
        _, metformin, warfarin = order_sign_session(hooks, auth, fhir_server)
        accept_and_apply(hooks, auth, fhir_server, metformin)
        override(hooks, auth, warfarin)
    _, extra, _ = order_sign_session(hooks, auth, fhir_server)
    override(hooks, auth, extra, comment="Renal function recovering")
    cmio, _ = signed_in(smart_app, ehr, "cmio-1")
    csrf = csrf_of(cmio.get("/app/safety").get_data(as_text=True))
    assert report_form(cmio, csrf, card=warfarin["uuid"]).status_code == 303
    page = cmio.get("/app/safety").get_data(as_text=True)

    model = "medication-safety-1.0.0"
    cards = rows(
        smart_app,
        "SELECT i.uuid, s.patient_id, s.encounter_id, s.created_at FROM issued_card i "
        "JOIN card_set s ON s.id = i.card_set_id "
        "WHERE s.disposition = 'issued' AND s.model_id = 'medication-safety'",
    )
    outcomes = dict(rows(smart_app, "SELECT card_uuid, outcome FROM card_decision ORDER BY id"))
    encounters = {(c.patient_id, c.encounter_id or str(c.created_at)[:10]) for c in cards}
    events = rows(smart_app, "SELECT detected_at, card_shown_at FROM safety_event")
    assert figure(page, model, "shown") == str(len(cards)) == "6"
    assert figure(page, model, "accepted") == str(sum(o == "accepted" for o in outcomes.values())) == "2"
    assert figure(page, model, "overridden") == str(sum(o == "overridden" for o in outcomes.values())) == "3"
    assert figure(page, model, "encounters") == str(len(encounters))
    assert figure(page, model, "events") == str(len(events)) == "1"
    assert figure(page, model, "per-1000") == str(round(1000 * len(events) / len(encounters), 2))
    reasons = Counter(
        r.override_display or r.override_code
        for r in rows(smart_app, "SELECT override_code, override_display FROM card_decision")
        if r.override_code
    )
    assert reasons and all(f"{reason} ({count})" in page for reason, count in reasons.items())
    hours = sorted(
        (as_utc(_at(e.detected_at)) - as_utc(_at(e.card_shown_at))).total_seconds() / 3600 for e in events
    )
    assert (
        figure(page, model, "time-to-detect")
        == f"median {round(median(hours), 2)}, max {round(hours[-1], 2)}"
    )
    assert "two-proportion z-test" in page and "|z| ≥ 3.0" in page and "insufficient data" in page
    assert '<svg class="chart"' in page and "<polyline" in page


def test_a_safety_report_is_refused_precisely_and_its_text_never_logged(
    smart_app, ehr, auth, fhir_server, caplog
):
    _, card, _ = order_sign_session(smart_app.test_client(), auth, fhir_server)
    client, _ = signed_in(smart_app, ehr, "clin-1")
    csrf = csrf_of(client.get("/app/safety/report").get_data(as_text=True))
    secret = "Mrs Example collapsed at home after the advice"
    caplog.set_level(logging.DEBUG)
    assert report_form(client, "wrong", card=card["uuid"], description=secret).status_code == 403
    unknown = report_form(client, csrf, card="00000000-0000-4000-8000-000000000000", description=secret)
    assert unknown.status_code == 404 and "no card with this uuid was issued" in unknown.get_data(
        as_text=True
    )
    wrong = report_form(client, csrf, card=card["uuid"], category="bad", description=secret)
    assert wrong.status_code == 400 and "category: one of" in wrong.get_data(as_text=True)
    assert report_form(client, csrf, card=card["uuid"], occurred="yesterday").status_code == 400
    done = report_form(client, csrf, card=card["uuid"], description=secret)
    assert done.status_code == 303
    assert "Recorded safety event #" in client.get(done.headers["Location"]).get_data(as_text=True)
    assert [r.reporter for r in rows(smart_app, "SELECT reporter FROM safety_event")] == [
        "Practitioner/clin-1"
    ]
    assert secret not in caplog.text


def test_patient_activity_shows_that_patients_cards_and_the_ehrs_provenance(
    smart_app, ehr, auth, fhir_server
):
    hooks = smart_app.test_client()
    patient, metformin, warfarin = order_sign_session(hooks, auth, fhir_server)
    override(hooks, auth, warfarin)
    _, other, _ = order_sign_session(hooks, auth, fhir_server)
    drain(smart_app.extensions[WORKER_KEY])
    client, _ = signed_in(smart_app, ehr, "cmio-1", patient=patient)
    page = client.get("/app/patient").get_data(as_text=True)
    assert metformin["uuid"] in page and warfarin["uuid"] in page and other["uuid"] not in page
    assert "overridden</strong> — risk-benefit-ratio" in page and "no decision received" in page
    written = search(fhir_server, "Provenance", entity=f"Patient/{patient}")
    assert written and f"Provenance in the EHR ({len(written)})" in page
    assert "AuditEvents in the EHR (0)" not in page and "MedicationRequest/" in page
    nobody, _ = signed_in(smart_app, ehr, "clin-1")
    assert "No patient in context" in nobody.get("/app/patient").get_data(as_text=True)


def test_patient_activity_shows_where_each_record_stands_on_the_ehr(smart_app, ehr, auth, fhir_server):
    """On the EHR (a link to our Provenance there), pending, or dead-lettered with the reason."""
    hooks = smart_app.test_client()
    patient, metformin, warfarin = order_sign_session(hooks, auth, fhir_server)
    override(hooks, auth, warfarin)
    with smart_app.extensions[DATABASE_KEY].begin() as connection:  # a record the server refuses
        connection.execute(text("UPDATE card_decision SET override_system = ' not a uri '"))
    drain(smart_app.extensions[WORKER_KEY])
    accept_and_apply(hooks, auth, fhir_server, metformin)  # not drained yet: pending
    client, _ = signed_in(smart_app, ehr, "cmio-1", patient=patient)
    page = client.get("/app/patient").get_data(as_text=True)

    [output] = [
        p for p in search(fhir_server, "Provenance", entity=f"Patient/{patient}") if "AI inference" in str(p)
    ]
    records = dict(re.findall(r'data-card="([^"]+)".*?data-record="decision">(.*?)</dd>', page, re.S))
    assert f'/Provenance/{output["id"]}" target=' in page and page.count(">on the EHR</span>") == 2
    assert "pending" in records[metformin["uuid"]]
    assert "dead-lettered" in records[warfarin["uuid"]]
    assert "HTTP 400: error/structure at Task.statusReason" in records[warfarin["uuid"]]


def test_signing_writes_the_edited_document_with_its_ai_provenance(smart_app, ehr, auth, fhir_server):
    patient, card = discharge_card(smart_app.test_client(), auth, fhir_server)
    put(fhir_server, {"resourceType": "Practitioner", "id": "clin-1"})  # the EHR's user, on its server
    context = {"card": card["uuid"], "review": True}
    client, landing = signed_in(smart_app, ehr, "clin-1", patient=patient, app_context=context)
    assert landing == f"/app/reviews/{card['uuid']}"
    page = client.get(landing).get_data(as_text=True)
    assert "Community acquired pneumonia" in page and "Condition/cond-cap" in page
    assert "not readable with your access" not in page
    draft = re.search(r'name="text"[^>]*>([^<]*)</textarea>', page).group(1)
    assert search(fhir_server, "DocumentReference", subject=f"Patient/{patient}") == []
    edited = "Reviewed by the treating clinician.\n" + draft.replace("&#39;", "'").replace("&amp;", "&")
    signed = client.post(f"{landing}/sign", data={"csrf_token": csrf_of(page), "text": edited})
    assert signed.status_code == 303
    drain(smart_app.extensions[WORKER_KEY])
    [document] = search(fhir_server, "DocumentReference", subject=f"Patient/{patient}")
    assert (document["status"], document["docStatus"]) == ("current", "final")
    assert base64.b64decode(document["content"][0]["attachment"]["data"]).decode() == edited.strip()
    assert document["authenticator"] == {"reference": "Practitioner/clin-1"}
    [provenance] = search(fhir_server, "Provenance", target=f"DocumentReference/{document['id']}")
    agents = {a["type"]["coding"][0]["code"]: a for a in provenance["agent"]}
    assert agents["author"]["who"]["reference"].startswith("Device/")
    assert agents["author"]["role"][0]["coding"][0]["code"] == "Artificial-Intelligence"
    assert agents["verifier"]["who"] == agents["attester"]["who"] == {"reference": "Practitioner/clin-1"}
    [signature] = provenance["signature"]  # Countersign's: the clinician signed by signing off here
    assert signature["who"]["reference"].startswith("Device/")
    assert signature["type"][0]["code"] == "1.2.840.10065.1.12.1.5"
    assert signature["sigFormat"] == "application/jose"
    assert {"role": "source", "what": {"reference": "Condition/cond-cap"}} in provenance["entity"]

    [decision] = rows(smart_app, "SELECT outcome, accepted_suggestions FROM card_decision")
    held = rows(smart_app, "SELECT held_for_review FROM issued_card WHERE uuid = :u", u=card["uuid"])[0][0]
    assert decision.outcome == "accepted" and re.search(r'"uuid": ?"([^"]+)"', held).group(1) in (
        decision.accepted_suggestions
    )
    kinds = [r.kind for r in rows(smart_app, "SELECT kind FROM ledger_entry ORDER BY seq")]
    assert kinds[-2:] == ["decision-recorded", "review-signed"]
    after = client.get(landing).get_data(as_text=True)
    assert "Signed by <code>Practitioner/clin-1</code>" in after and "(edited)" in after
    again = client.post(f"{landing}/sign", data={"csrf_token": csrf_of(page), "text": "x"})
    assert again.status_code == 409


def test_rejecting_records_the_reason_and_writes_nothing(smart_app, ehr, auth, fhir_server):
    patient, card = discharge_card(smart_app.test_client(), auth, fhir_server)
    client, _ = signed_in(smart_app, ehr, "cmio-1", patient=patient)
    path = f"/app/reviews/{card['uuid']}"
    csrf = csrf_of(client.get(path).get_data(as_text=True))
    assert client.post(f"{path}/reject", data={"csrf_token": csrf, "reason": "other"}).status_code == 400
    assert client.post(f"{path}/reject", data={"csrf_token": "x", "reason": "inaccurate"}).status_code == 403
    rejected = client.post(
        f"{path}/reject", data={"csrf_token": csrf, "reason": "inaccurate", "comment": "CRP wrong"}
    )
    assert rejected.status_code == 303
    drain(smart_app.extensions[WORKER_KEY])
    assert search(fhir_server, "DocumentReference", subject=f"Patient/{patient}") == []
    [decision] = rows(smart_app, "SELECT outcome, override_code, user_comment FROM card_decision")
    assert tuple(decision) == ("overridden", "inaccurate", "CRP wrong")
    assert "Rejected by <code>Practitioner/cmio-1</code>" in client.get(path).get_data(as_text=True)
    assert rows(smart_app, "SELECT kind FROM outbox_message WHERE kind = 'signed-review'") == []


def test_a_card_with_nothing_held_and_a_draft_of_another_patient(smart_app, ehr, auth, fhir_server):
    _, card, _ = order_sign_session(smart_app.test_client(), auth, fhir_server)
    _, held = discharge_card(smart_app.test_client(), auth, fhir_server)
    client, _ = signed_in(smart_app, ehr, "clin-1", patient="someone-else")
    nothing = client.get(f"/app/reviews/{card['uuid']}")
    assert nothing.status_code == 404 and "No AI draft is waiting" in nothing.get_data(as_text=True)
    assert client.get("/app/reviews/not-a-card").status_code == 404
    page = client.get(f"/app/reviews/{held['uuid']}").get_data(as_text=True)
    assert "another patient" in page
    signed = client.post(f"/app/reviews/{held['uuid']}/sign", data={"csrf_token": csrf_of(page), "text": "x"})
    assert signed.status_code == 409 and rows(smart_app, "SELECT id FROM card_decision") == []
