"""Logs never carry PHI: hook calls (prefetched and fetched from a real FHIR server), bad requests
that quote patient data, feedback with free text, write-back, and app pages, all at DEBUG level."""

from __future__ import annotations

import io
import json
import logging
import uuid

import pytest

from app import WORKER_KEY
from app.observability import logging as json_logging
from tests.builders import full_prefetch, medication_request, moment, order_sign_request
from tests.discharge_builders import IDENTIFYING as DISCHARGE_IDENTIFYING
from tests.discharge_builders import discharge_request, model_answer
from tests.fake_llm_server import FakeLlmServer
from tests.writeback_helpers import drain, put, writeback_settings

SERVICE = "/cds-services/medication-safety"
FEEDBACK = SERVICE + "/feedback"
PATIENT_ID = "phi-probe-001"
NAME = {"family": "Marchetti-Okafor", "given": ["Evangeline", "Rosalind"]}
MRN = "MRN-93817264"
BIRTH_DATE = "1948-07-19"
PHONE = "+1-617-555-0142"
ADDRESS = {"line": ["42 Wallaby Way"], "city": "Quenchbury", "postalCode": "02139-4471", "state": "MA"}
COMMENT = f"Spoke with Evangeline Marchetti-Okafor at {PHONE}, lives at 42 Wallaby Way"
PHI = [
    "Marchetti-Okafor",
    "Evangeline",
    "Rosalind",
    MRN,
    "93817264",
    BIRTH_DATE,
    PHONE,
    "555-0142",
    "Wallaby",
    "Quenchbury",
    "02139-4471",
]


def synthetic_patient() -> dict:
    return {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.19.5", "value": MRN}],
        "name": [{"use": "official", **NAME}],
        "telecom": [{"system": "phone", "value": PHONE, "use": "home"}],
        "gender": "female",
        "birthDate": BIRTH_DATE,
        "address": [{"use": "home", **ADDRESS}],
    }


@pytest.fixture
def log_lines():
    """The service's own log output (the JSON handler every logger reaches), at DEBUG."""
    buffer = io.StringIO()
    handler = json_logging.configure("DEBUG", stream=buffer)
    yield lambda: buffer.getvalue().splitlines()
    handler.setStream(logging.sys.stderr)
    logging.getLogger().setLevel(logging.INFO)


def hook_body(prefetch: dict, fhir_server: str | None = None, **extra: object) -> dict:
    body = order_sign_request([medication_request("draft-1", patient_id=PATIENT_ID)], prefetch)
    body["context"]["patientId"] = PATIENT_ID
    if fhir_server:
        body["fhirServer"] = fhir_server
        body["fhirAuthorization"] = {
            "access_token": "opaque-token",
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": "user/*.read",
            "subject": "cs",
        }
    return body | extra


@pytest.mark.integration
def test_no_log_line_carries_the_patients_name_identifier_birth_date_phone_or_address(
    make_app, auth, sign, fhir_server, log_lines
):
    put(fhir_server, synthetic_patient())
    app = make_app(**writeback_settings(fhir_server), log_level="DEBUG")
    client = app.test_client()
    prefetched = full_prefetch(egfr_value=25, patient_id=PATIENT_ID) | {"patient": synthetic_patient()}
    fetched = {key: value for key, value in prefetched.items() if key != "patient"}

    def post(path: str, body: object, **headers: str):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **auth(path), **headers}
        return client.post(path, data=data, headers=headers)

    card = post(SERVICE, hook_body(prefetched)).get_json()["cards"][0]
    assert post(SERVICE, hook_body(fetched, fhir_server)).status_code == 200
    assert post(SERVICE, hook_body(prefetched, hookInstance=f"{NAME['family']} {MRN}")).status_code == 400
    bad_user = hook_body(prefetched)
    bad_user["context"]["userId"] = f"Practitioner/{NAME['given'][0]} {PHONE}"
    assert post(SERVICE, bad_user).status_code == 400
    truncated = json.dumps(hook_body(prefetched)).encode()[:-40]
    assert post(SERVICE, truncated).status_code == 400
    assert post(SERVICE, hook_body(prefetched), Authorization=f"Bearer {MRN}").status_code == 401
    override = {
        "card": card["uuid"],
        "outcome": "overridden",
        "overrideReason": {"userComment": COMMENT},
        "outcomeTimestamp": moment(),
    }
    assert post(FEEDBACK, {"feedback": [override]}).status_code == 200
    unknown = override | {"card": str(uuid.uuid4())}
    assert post(FEEDBACK, {"feedback": [unknown]}).status_code == 404
    for page in ("/app/launch", "/app/models/medication-safety", f"/app/models/{NAME['family']}"):
        assert client.get(page).status_code in (200, 404)
    assert client.get("/api/models/medication-safety").status_code == 200
    drain(app.extensions[WORKER_KEY])

    lines = log_lines()
    events = [json.loads(line) for line in lines]
    leaks = [(phi, line) for line in lines for phi in PHI if phi.lower() in line.lower()]
    assert leaks == []
    requests_logged = [event for event in events if event["message"] == "request"]
    assert len(requests_logged) == 12
    assert all(event.get("request_id") for event in requests_logged)
    hook_route = "/cds-services/<service_id>"
    answered = [e for e in requests_logged if e["route"] == hook_route and e["status"] == 200]
    assert len(answered) == 2 and all(uuid.UUID(e["hook_instance"]) for e in answered)
    assert any(event["logger"].startswith("urllib3") for event in events), "FHIR reads were logged too"


def test_the_filter_hashes_free_text_exceptions_and_unknown_fields_but_keeps_codes(log_lines):
    log = logging.getLogger("countersign.test")
    log.warning(
        "lookup for %s failed after %d tries",
        f"{NAME['family']}, {NAME['given'][0]}",
        3,
        extra={"cause": "wrong-aud", "patient_name": NAME["family"], "service": f"{MRN} {PHONE}"},
    )
    try:
        raise ValueError(f"bad birth date {BIRTH_DATE} for {MRN}")
    except ValueError:
        log.exception("validation failed")
    log.info({"address": ADDRESS})
    first, second, third = (json.loads(line) for line in log_lines())
    assert first["message"].startswith("lookup for h:") and first["message"].endswith("after 3 tries")
    assert first["cause"] == "wrong-aud"
    assert first["patient_name"].startswith("h:") and first["service"].startswith("h:")
    assert second["exception"]["type"] == "ValueError"
    assert any("test_logging_phi.py" in frame for frame in second["exception"]["frames"])
    assert third["message"].startswith("h:")
    text = "\n".join(log_lines())
    assert not [phi for phi in PHI if phi in text]


def test_a_language_model_call_through_de_identification_logs_no_phi(make_app, auth, log_lines):
    """The discharge draft: one good answer, one failure; neither the logs nor the requests to the
    model carry the patient's identifiers."""
    with FakeLlmServer(model_answer) as llm:
        app = make_app(
            llm_url=llm.base_url,
            llm_model="test-model",
            llm_api_key="test-key",
            deidentify_secret="a-de-identification-secret-for-tests",
            llm_deadline_seconds=1.0,
            log_level="DEBUG",
        )
        client = app.test_client()
        path = "/cds-services/discharge-summary-draft"
        for mode in ("normal", "malformed"):
            llm.mode = mode
            response = client.post(path, json=discharge_request(), headers=auth(path))
            assert response.status_code == 200 and len(response.get_json()["cards"]) == 1
        sent = [json.dumps(body) for body in llm.requests]
    assert len(sent) == 2
    text = "\n".join([*log_lines(), *sent]).lower()
    assert [value for value in DISCHARGE_IDENTIFYING if value.lower() in text] == []
