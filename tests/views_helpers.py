"""Seeding the app's views through the real paths: CDS hook calls, feedback, a held discharge draft
whose sources sit on the FHIR test server, and SMART launches with a patient and an appContext."""

from __future__ import annotations

import json
import re
import uuid

import requests
from flask.testing import FlaskClient

from sandbox.mock_ehr_auth import MockEhr
from tests.discharge_builders import PATIENT_ID, discharge_prefetch, discharge_request
from tests.smart_helpers import authorize_at_ehr, local
from tests.writeback_helpers import put

DISCHARGE = "/cds-services/discharge-summary-draft"


def discharge_card(client: FlaskClient, auth, fhir_base: str) -> tuple[str, dict]:
    """A held discharge draft for a fresh patient whose record (the draft's sources) is on the server."""
    patient_id = f"dc{uuid.uuid4().hex[:12]}"
    prefetch = json.loads(json.dumps(discharge_prefetch()).replace(PATIENT_ID, patient_id))
    for value in prefetch.values():
        for resource in [e["resource"] for e in value.get("entry", [])] if "entry" in value else [value]:
            put(fhir_base, resource)
    body = discharge_request(prefetch) | {"fhirServer": fhir_base}
    body["context"]["patientId"] = patient_id
    response = client.post(DISCHARGE, json=body, headers=auth(DISCHARGE))
    assert response.status_code == 200, response.get_data(as_text=True)
    [card] = response.get_json()["cards"]
    return patient_id, card


def launch(
    client: FlaskClient, ehr: MockEhr, user: str, patient: str | None = None, app_context: dict | None = None
):
    """An EHR launch (patient and appContext as the EHR sets them); returns the callback's response."""
    body = {"user": user, "patient": patient, "appContext": app_context}
    created = requests.post(f"{ehr.state.public_url}/launches", json=body, timeout=5)
    created.raise_for_status()
    launched = client.get("/app/launch", query_string={"iss": ehr.iss, "launch": created.json()["launch"]})
    started = client.get(local(launched.headers["Location"]))
    return client.get(local(authorize_at_ehr(started.headers["Location"])))


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
