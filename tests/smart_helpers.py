"""The SMART test harness: users and roles, a mock EHR in front of the FHIR test server, launch walkers.

The browser legs (app → EHR authorize → app callback) are walked by hand: the Flask test client
plays the browser at the app, ``requests`` plays it at the mock EHR.
"""

from __future__ import annotations

import re
import socket
from urllib.parse import urlsplit

import requests
from flask.testing import FlaskClient

from sandbox.mock_ehr_auth import MockClient, MockEhr, MockUser
from smart_launch.tenants import SmartEhr

CLIENT_ID = "countersign"
CLIENT_SECRET = "test-secret-0123456789"
USERS = [
    MockUser("clin-1", "Practitioner/clin-1", "Casey Clinician"),
    MockUser("cmio-1", "Practitioner/cmio-1", "Morgan CMIO"),
    MockUser("so-1", "PractitionerRole/so-1", "Sam Safety"),
    MockUser("aud-1", "Practitioner/aud-1", "Alex Auditor"),
    MockUser("pat-1", "Patient/p1", "A patient"),
]
ROLES = {
    "Practitioner/clin-1": "clinician",
    "Practitioner/cmio-1": "cmio",
    "PractitionerRole/so-1": "safety-officer",
    "Practitioner/aud-1": "auditor",
}
CALLBACK = "http://localhost/app/callback"
PATIENT = {
    "resourceType": "Patient",
    "id": "smart-p1",
    "name": [{"family": "Testpatient", "given": ["Robin"]}],
    "gender": "female",
    "birthDate": "1961-04-12",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def mock_ehr(fhir_upstream: str, *redirect_uris: str) -> MockEhr:
    return MockEhr(fhir_upstream, [MockClient(CLIENT_ID, list(redirect_uris), CLIENT_SECRET)], USERS)


def smart_settings(ehr: MockEhr, **overrides: object) -> dict:
    tenant = SmartEhr(iss=ehr.iss, client_id=CLIENT_ID, client_secret=CLIENT_SECRET, roles=ROLES)
    return {"smart_ehrs": [tenant], "smart_allow_http_loopback": True} | overrides


def new_launch(ehr: MockEhr, user: str, patient: str | None = None) -> str:
    response = requests.post(
        f"{ehr.state.public_url}/launches", json={"user": user, "patient": patient}, timeout=5
    )
    response.raise_for_status()
    return response.json()["launch"]


def local(url: str) -> str:
    """Path and query of an app URL, for the test client."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def to_ehr_authorize(client: FlaskClient, ehr: MockEhr, user: str, patient: str | None = None) -> str:
    """EHR launch up to the redirect to the EHR's authorize endpoint; returns that URL."""
    launched = client.get(
        "/app/launch", query_string={"iss": ehr.iss, "launch": new_launch(ehr, user, patient)}
    )
    assert launched.status_code == 303, launched.get_data(as_text=True)
    started = client.get(local(launched.headers["Location"]))
    assert started.status_code == 303, started.get_data(as_text=True)
    return started.headers["Location"]


def authorize_at_ehr(authorize_url: str, user: str | None = None) -> str:
    """The EHR's answer: the callback URL with ``code`` and ``state`` (standalone: sign in as ``user``)."""
    if user is None:
        answer = requests.get(authorize_url, allow_redirects=False, timeout=5)
    else:
        answer = requests.post(authorize_url, data={"user": user}, allow_redirects=False, timeout=5)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def ehr_launch(client: FlaskClient, ehr: MockEhr, user: str, patient: str | None = None):
    callback = authorize_at_ehr(to_ehr_authorize(client, ehr, user, patient))
    return client.get(local(callback))


def standalone_launch(client: FlaskClient, user: str):
    started = client.post("/app/launch/standalone")
    assert started.status_code == 303
    authorize_url = client.get(local(started.headers["Location"])).headers["Location"]
    return client.get(local(authorize_at_ehr(authorize_url, user)))


def sign_out(client: FlaskClient):
    """The user's own sign-out: the page's form, posted with its CSRF token."""
    page = client.get("/app/").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return client.post("/app/logout", data={"csrf_token": csrf})


def refresh_tokens(ehr: MockEhr, user: str) -> list[str]:
    """Every refresh token the mock EHR issued to ``user`` (a mock user id, e.g. ``cmio-1``)."""
    with ehr.state.lock:
        return [t.refresh_token for t in ehr.state.tokens.values() if t.user_id == user and t.refresh_token]
