"""The discharge-summary-draft service through the real app: offline draft, language model, fallbacks."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests
from sqlalchemy import text

from app import DATABASE_KEY
from tests.card_rules import response_problems
from tests.conftest import METRICS_AUTH
from tests.discharge_builders import (
    ENCOUNTER_ID,
    IDENTIFYING,
    PATIENT_ID,
    discharge_request,
    encounter,
    model_answer,
    patient,
)
from tests.fake_llm_server import FakeLlmServer
from tests.writeback_helpers import put

PATH = "/cds-services/discharge-summary-draft"
SECRET = "a-de-identification-secret-for-tests"
INPUTS = {
    f"Patient/{PATIENT_ID}",
    f"Encounter/{ENCOUNTER_ID}",
    "Condition/cond-cap",
    "Condition/cond-t2dm",
    "Procedure/proc-cxr",
    "MedicationRequest/med-amox",
    "Observation/obs-crp-1",
    "Observation/obs-crp-2",
    "Observation/obs-wbc",
}


@pytest.fixture
def llm():
    with FakeLlmServer(model_answer) as server:
        yield server


@pytest.fixture
def llm_app(make_app, llm):
    return make_app(
        llm_url=llm.base_url,
        llm_model="test-model",
        llm_api_key="test-key",
        deidentify_secret=SECRET,
        llm_deadline_seconds=1.0,
        llm_breaker_failures=2,
        llm_breaker_reset_seconds=1.0,
    )


def call(client, auth, body: dict | None = None) -> dict:
    response = client.post(PATH, json=body or discharge_request(), headers=auth(PATH))
    assert response.status_code == 200, response.get_data(as_text=True)
    payload = response.get_json()
    assert response_problems(payload) == []
    [card] = payload["cards"]
    return card


def ai(card: dict) -> dict:
    return card["extension"]["health.countersign.ai"]


def proposed_document(app, card: dict) -> tuple[dict, str]:
    """High risk: the card carries no action; the draft waits in Countersign for review and signature."""
    assert "suggestions" not in card
    assert json.loads(card["links"][0]["appContext"]) == {"card": card["uuid"], "review": True}
    with app.extensions[DATABASE_KEY].connect() as connection:
        held = connection.execute(
            text("SELECT held_for_review FROM issued_card WHERE uuid = :uuid"), {"uuid": card["uuid"]}
        ).scalar_one()
    [suggestion] = json.loads(held) if isinstance(held, str) else held
    [action] = suggestion["actions"]
    assert action["type"] == "create"
    document = action["resource"]
    return document, base64.b64decode(document["content"][0]["attachment"]["data"]).decode()


def breaker(app):
    return app.extensions["cds_hooks"].backend.catalogue["discharge-summary-draft"].versions["1.0.0"].engine


def test_offline_the_extractive_draft_is_proposed_as_a_preliminary_discharge_summary(app, client, auth):
    card = call(client, auth)
    assert card["indicator"] == "info"
    assert card["source"]["label"] == "Countersign Discharge Summary Draft 1.0.0"
    assert card["source"]["url"].endswith("/app/models/discharge-summary-draft")
    assert ai(card)["producer"] == "extractive" and "fallback" not in ai(card)
    assert "offline extractive summariser" in card["detail"]
    assert set(ai(card)["evidence"]) <= INPUTS
    assert {"Condition/cond-cap", "Procedure/proc-cxr", "MedicationRequest/med-amox"} <= set(
        ai(card)["evidence"]
    )
    document, text = proposed_document(app, card)
    assert document["status"] == "current" and document["docStatus"] == "preliminary"
    assert document["type"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "18842-5",
        "display": "Discharge summary",
    }
    assert {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
        "code": "AIAST",
    }.items() <= (document["meta"]["security"][0].items())
    assert document["subject"] == {"reference": f"Patient/{PATIENT_ID}"}
    assert document["context"]["encounter"] == [{"reference": f"Encounter/{ENCOUNTER_ID}"}]
    assert "Community acquired pneumonia, onset 2026-02-01. [`Condition/cond-cap`]" in text
    assert "C reactive protein: 24 mg/L on 2026-02-05. [`Observation/obs-crp-2`]" in text
    assert "amoxicillin 875 mg oral tablet: 875 mg by mouth twice daily for 5 days." in text
    assert "Observation/obs-crp-1" not in text  # only the latest result of each test


def test_the_language_model_draft_is_reidentified_and_ungrounded_sentences_dropped(llm_app, llm, auth):
    card = call(llm_app.test_client(), auth)
    assert ai(card)["producer"] == "language-model"
    assert ai(card)["prompt"] == "discharge-summary-prompt@1"
    assert ai(card)["droppedSentences"] == 1
    _, text = proposed_document(llm_app, card)
    assert "Community acquired pneumonia since 2026-02-01. [`Condition/cond-cap`]" in text
    assert "Admitted 2026-02-01 with fever and cough. [`Encounter/enc-2026-0042`]" in text
    assert "sepsis" not in text and "sepsis" not in card["detail"]
    assert "language model test-model" in card["detail"]
    assert set(ai(card)["evidence"]) == {
        "Encounter/enc-2026-0042",
        "Condition/cond-cap",
        "Condition/cond-t2dm",
    }
    [request] = llm.requests
    assert request["model"] == "test-model"
    assert request["response_format"]["type"] == "json_schema"
    assert request["response_format"]["json_schema"]["schema"]["required"] == ["sections"]
    assert llm.headers[0]["Authorization"] == "Bearer test-key"


def test_no_identifier_of_the_patient_appears_in_any_request_that_left(llm_app, llm, auth):
    client = llm_app.test_client()
    for mode in ("normal", "schema-violation", "normal"):
        llm.mode = mode
        call(client, auth)
    assert len(llm.raw_requests) == 3
    for raw in llm.raw_requests:
        sent = raw.decode()
        leaked = [value for value in IDENTIFYING if value.lower() in sent.lower()]
        assert leaked == []
        assert "2026-02-01" not in sent  # encounter dates are shifted too
    for request in llm.requests:
        resources = request["messages"][1]["content"]
        assert all(f'"{key}"' not in resources for key in ("name", "address", "telecom", "identifier"))


@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        ("slow", "timeout"),
        ("hanging", "timeout"),
        ("malformed", "malformed"),
        ("schema-violation", "schema"),
        ("refusal", "refusal"),
        ("error-500", "http-error"),
    ],
)
def test_when_the_model_fails_the_card_comes_from_the_extractive_fallback(
    llm_app, llm, auth, caplog, mode, kind
):
    llm.mode = mode
    started = time.monotonic()
    card = call(llm_app.test_client(), auth)
    assert time.monotonic() - started < 2.5  # deadline 1 s, never the server's 3 s or forever
    assert ai(card)["producer"] == "extractive"
    assert ai(card)["fallback"] == kind
    assert f"no usable draft ({kind})" in card["detail"]
    _, text = proposed_document(llm_app, card)
    assert "Community acquired pneumonia, onset 2026-02-01." in text
    assert len(llm.requests) == 1
    assert any(getattr(record, "cause", None) == kind for record in caplog.records)
    assert [value for value in IDENTIFYING if value.lower() in caplog.text.lower()] == []


def test_the_breaker_opens_after_repeated_failures_and_half_opens_later(llm_app, llm, auth):
    client = llm_app.test_client()
    llm.mode = "error-500"
    assert [ai(call(client, auth))["fallback"] for _ in range(2)] == ["http-error", "http-error"]
    assert breaker(llm_app).breaker_state == "open"
    assert ai(call(client, auth))["fallback"] == "circuit-open"
    assert len(llm.requests) == 2  # the open breaker sent nothing
    metrics = client.get("/metrics", headers=METRICS_AUTH).get_data(as_text=True)
    breaker_lines = [line for line in metrics.splitlines() if line.startswith("countersign_circuit_breaker")]
    assert any('breaker="llm:' in line and line.endswith(" 2.0") for line in breaker_lines)  # 2 = open
    assert 'countersign_llm_request_duration_seconds_count{endpoint="' in metrics
    assert 'outcome="http-error"' in metrics
    time.sleep(1.1)
    assert breaker(llm_app).breaker_state == "half-open"
    llm.mode = "normal"
    assert ai(call(client, auth))["producer"] == "language-model"
    assert breaker(llm_app).breaker_state == "closed"
    assert len(llm.requests) == 3


def test_an_encounter_discharge_without_an_encounter_gives_no_card(client, auth):
    body = discharge_request()
    body["prefetch"]["encounter"] = None
    response = client.post(PATH, json=body, headers=auth(PATH))
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


def test_discovery_lists_the_service_with_its_prefetch(client, auth):
    services = client.get("/cds-services", headers=auth("/cds-services")).get_json()["services"]
    [service] = [s for s in services if s["id"] == "discharge-summary-draft"]
    assert service["hook"] == "encounter-discharge"
    assert service["prefetch"]["encounter"] == "Encounter/{{context.encounterId}}"
    assert set(service["prefetch"]) == {
        "patient",
        "encounter",
        "conditions",
        "procedures",
        "medications",
        "labs",
    }


@pytest.mark.integration
def test_the_fhir_server_accepts_the_proposed_document_as_the_ehr_would_create_it(
    app, client, auth, fhir_server
):
    document, _ = proposed_document(app, call(client, auth))
    for on_record in (patient(), encounter()):  # the chart the EHR files the document in
        put(fhir_server, on_record)
    created = requests.post(
        f"{fhir_server}/DocumentReference",
        json=document,
        headers={"Content-Type": "application/fhir+json"},
        timeout=10,
    )
    assert created.status_code == 201, created.text
    assert created.json()["docStatus"] == "preliminary"
