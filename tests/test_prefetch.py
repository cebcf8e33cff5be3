"""Prefetch states against a real FHIR R4 server process (reference §2.4, §9.4 P1-P7)."""

from __future__ import annotations

import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from sandbox.fhir_test_server import FhirTestServer
from tests.builders import egfr, full_prefetch, medication_request, order_sign_request, patient

pytestmark = pytest.mark.integration
SERVICE = "/cds-services/medication-safety"


@pytest.fixture
def seeded(fhir_server: str) -> dict:
    """A fresh patient on the FHIR server with an eGFR of 25 and one active medication."""
    patient_id = f"p{uuid.uuid4().hex[:12]}"
    resources = [patient(patient_id), egfr(25, obs_id=f"o{patient_id}", patient_id=patient_id)]
    resources.append(medication_request(f"m{patient_id}", status="active", patient_id=patient_id))
    for resource in resources:
        url = f"{fhir_server}/{resource['resourceType']}/{resource['id']}"
        response = requests.put(
            url, json=resource, headers={"Content-Type": "application/fhir+json"}, timeout=10
        )
        assert response.status_code in (200, 201), response.text
    return {"fhir": fhir_server, "patient_id": patient_id}


def call(client, auth, body: dict):
    return client.post(SERVICE, json=body, headers=auth(SERVICE))


def with_server(body: dict, fhir: str) -> dict:
    return body | {
        "fhirServer": fhir,
        "fhirAuthorization": {
            "access_token": "hook-token-123",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/*.read",
            "subject": "countersign",
        },
    }


def test_missing_keys_are_fetched_from_the_fhir_server(client, auth, seeded):
    draft = medication_request("draft-1", patient_id=seeded["patient_id"])
    body = with_server(order_sign_request([draft], {}, patient_id=seeded["patient_id"]), seeded["fhir"])
    response = call(client, auth, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    card = response.get_json()["cards"][0]
    assert card["indicator"] == "critical"
    assert f"Observation/o{seeded['patient_id']}" in card["detail"]


def test_missing_key_without_fhir_server_is_412(client, auth):
    prefetch = full_prefetch()
    del prefetch["renalFunction"]
    response = call(client, auth, order_sign_request([medication_request("d1")], prefetch))
    assert response.status_code == 412
    outcome = response.get_json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert "prefetch.renalFunction" in outcome["issue"][0]["expression"]


def test_null_key_means_known_empty_and_is_not_requeried(client, auth):
    prefetch = full_prefetch() | {"renalFunction": None}
    body = with_server(order_sign_request([medication_request("d1")], prefetch), "http://127.0.0.1:9/fhir")
    response = call(client, auth, body)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


def test_operation_outcome_key_is_fetched_from_the_server(client, auth, seeded):
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    prefetch = full_prefetch(patient_id=seeded["patient_id"]) | {"renalFunction": outcome}
    draft = medication_request("d1", patient_id=seeded["patient_id"])
    body = with_server(order_sign_request([draft], prefetch, patient_id=seeded["patient_id"]), seeded["fhir"])
    card = call(client, auth, body).get_json()["cards"][0]
    assert f"Observation/o{seeded['patient_id']}" in card["detail"]


def test_operation_outcome_key_without_server_is_412_never_500(client, auth):
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    prefetch = full_prefetch() | {"renalFunction": outcome}
    assert call(client, auth, order_sign_request([medication_request("d1")], prefetch)).status_code == 412


def test_non_object_prefetch_value_is_treated_as_unavailable(client, auth):
    prefetch = full_prefetch() | {"patient": "123"}
    assert call(client, auth, order_sign_request([medication_request("d1")], prefetch)).status_code == 412


def test_paginated_prefetch_is_completed_from_the_server(client, auth, fhir_server):
    patient_id = f"p{uuid.uuid4().hex[:12]}"
    observations = [egfr(90, days_ago=30 + i, patient_id=patient_id) for i in range(5)]
    observations.append(egfr(22, days_ago=1, obs_id=f"latest{patient_id}", patient_id=patient_id))
    for resource in [patient(patient_id), *observations]:
        requests.put(
            f"{fhir_server}/{resource['resourceType']}/{resource['id']}", json=resource, timeout=10
        ).raise_for_status()
    first_page = requests.get(
        f"{fhir_server}/Observation", params={"patient": patient_id, "_count": 2, "_sort": "date"}, timeout=10
    ).json()
    assert any(link["relation"] == "next" for link in first_page["link"])
    prefetch = full_prefetch(patient_id=patient_id) | {"renalFunction": first_page}
    draft = medication_request("d1", patient_id=patient_id)
    body = with_server(order_sign_request([draft], prefetch, patient_id=patient_id), fhir_server)
    card = call(client, auth, body).get_json()["cards"][0]
    assert f"Observation/latest{patient_id}" in card["detail"]


class HangingServer:
    """A FHIR endpoint that never answers in time: the service must not hang with it."""

    def __init__(self, delay: float) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(delay)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/fhir"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_hanging_fhir_server_gives_a_prompt_412(make_app, auth):
    hanging = HangingServer(delay=5)
    try:
        client = make_app(fhir_timeout_seconds=0.5, prefetch_budget_seconds=1.0).test_client()
        prefetch = full_prefetch()
        del prefetch["renalFunction"]
        body = with_server(order_sign_request([medication_request("d1")], prefetch), hanging.url)
        started = time.monotonic()
        response = call(client, auth, body)
        assert time.monotonic() - started < 2.0
        assert response.status_code == 412
    finally:
        hanging.close()


def test_full_prefetch_makes_no_outbound_call(client, auth):
    body = with_server(
        order_sign_request([medication_request("d1")], full_prefetch()), "http://127.0.0.1:9/fhir"
    )
    assert call(client, auth, body).status_code == 200


def test_user_token_templates_are_filled_from_user_id():
    from cds_hooks.hooks import HOOKS
    from cds_hooks.models import parse_context
    from cds_hooks.prefetch import render_template

    context = parse_context(HOOKS["patient-view"], {"userId": "PractitionerRole/r-9", "patientId": "p1"})
    assert (
        render_template("PractitionerRole?_id={{userPractitionerRoleId}}", context)
        == "PractitionerRole?_id=r-9"
    )
    assert render_template("Practitioner/{{userPractitionerId}}", context) is None
    assert render_template("Patient/{{context.patientId}}", context) == "Patient/p1"
    assert render_template("{{context.userId}}", context) == "PractitionerRole/r-9"


def test_fetch_sends_the_hooks_fhir_authorization_token(client, auth, tmp_path):
    log_file = tmp_path / "requests.jsonl"
    with FhirTestServer(require_bearer="hook-token-123", log_requests=log_file) as server:
        body = with_server(order_sign_request([medication_request("d1")], {}), server.base_url)
        response = call(client, auth, body)
    assert response.status_code == 200, response.get_data(as_text=True)
    logged = [json.loads(line) for line in log_file.read_text().splitlines()]
    assert logged and all(entry["authorization_present"] for entry in logged)
    assert "hook-token-123" not in log_file.read_text()
