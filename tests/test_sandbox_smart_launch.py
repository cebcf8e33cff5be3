"""The sandbox EHR's side of an EHR launch: a launch context on the (real) mock EHR for the chart's
patient, encounter and chosen user, and the refusals an EHR owes (unknown user, unregistered app,
unknown patient, authorization server down) as OperationOutcomes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask

from sandbox import demo_smart
from sandbox.ehr import SandboxConfig
from sandbox.ehr import create_app as create_sandbox_app
from sandbox.ehr.cds_client import ClientIdentity
from sandbox.ehr.launcher import LaunchUser, SmartLauncher
from sandbox.ehr.synthetic.cohort import CMIO
from sandbox.mock_ehr_auth import MockEhr
from tests.smart_helpers import free_port

pytestmark = pytest.mark.integration
APP_URL = "http://localhost:8000"


@pytest.fixture
def auth(fhir_server: str) -> Iterator[MockEhr]:
    with demo_smart.mock_ehr(fhir_server, APP_URL, "s3cret-for-tests") as ehr:
        yield ehr


def sandbox(fhir_server: str, identity: ClientIdentity, launcher: SmartLauncher | None) -> Flask:
    config = SandboxConfig(fhir_server, f"{APP_URL}/cds-services", identity, launcher=launcher)
    return create_sandbox_app(config)


@pytest.fixture
def client(fhir_server: str, identity: ClientIdentity, auth: MockEhr):
    return sandbox(fhir_server, identity, demo_smart.launcher(auth.state.public_url, APP_URL)).test_client()


def launch(client, patient_id: str, **body: object):
    return client.post(f"/api/patients/{patient_id}/smart-launch", json=body)


def test_the_launch_carries_the_chosen_user_patient_and_encounter(
    client, auth: MockEhr, fresh_patient: Callable[[str], str]
):
    patient_id = fresh_patient("cs-renal-metformin")
    page = client.get(f"/patients/{patient_id}").get_data(as_text=True)
    assert 'id="launch-countersign"' in page
    assert '<option value="cmio">Dr Ama Osei (CMIO)</option>' in page

    answer = launch(client, patient_id, user="cmio", encounter="enc-1")
    assert answer.status_code == 200, answer.json
    url = urlsplit(answer.json["url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{APP_URL}/app/launch"
    query = parse_qs(url.query)
    assert query["iss"] == [auth.iss]
    context = auth.state.launches[query["launch"][0]]
    assert (context.user_id, context.patient, context.encounter) == ("cmio", patient_id, "enc-1")
    assert auth.state.users[context.user_id].fhir_user == CMIO


def test_a_cards_smart_link_to_the_registered_app_launches_it_with_its_app_context(
    client, auth: MockEhr, fresh_patient
):
    patient_id = fresh_patient("cs-renal-metformin")
    app_context = '{"card": "5f1c-card", "review": true}'
    answer = launch(client, patient_id, user="clinician", app=f"{APP_URL}/app/launch", appContext=app_context)
    assert answer.status_code == 200
    assert answer.json["url"].startswith(f"{APP_URL}/app/launch?iss=")
    launch_id = parse_qs(urlsplit(answer.json["url"]).query)["launch"][0]
    assert auth.state.launches[launch_id].app_context == app_context


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        ({"user": "cmio", "app": "https://elsewhere.example/app/launch"}, "app"),
        ({"user": "cmio", "app": f"{APP_URL}/app/launch?iss=https://evil.example"}, "app"),
        ({"user": "nobody"}, "user"),
        ({"user": 7}, "user"),
        ({"user": "cmio", "encounter": "../Patient"}, "encounter"),
        ({"user": "cmio", "appContext": {"card": "x"}}, "appContext"),
    ],
)
def test_refusals_name_the_field_and_create_no_launch(client, auth, fresh_patient, body, expression):
    patient_id = fresh_patient("cs-clean-chart")
    answer = launch(client, patient_id, **body)
    assert answer.status_code == 400
    assert answer.json["resourceType"] == "OperationOutcome"
    assert answer.json["issue"][0]["expression"] == [expression]
    assert auth.state.launches == {}


def test_unknown_patient_is_404(client, auth):
    answer = launch(client, "no-such-patient", user="cmio")
    assert answer.status_code == 404
    assert auth.state.launches == {}


def test_authorization_server_down_is_502(fhir_server, identity, fresh_patient):
    users = (LaunchUser("cmio", "CMIO"),)
    nowhere = f"http://127.0.0.1:{free_port()}/launches"
    down = SmartLauncher(nowhere, f"{APP_URL}/app/launch", users, timeout=1)
    client = sandbox(fhir_server, identity, down).test_client()
    answer = launch(client, fresh_patient("cs-clean-chart"), user="cmio")
    assert answer.status_code == 502
    assert answer.json["issue"][0]["code"] == "exception"


def test_without_a_registered_app_there_is_no_button_and_no_launch(fhir_server, identity, fresh_patient):
    client = sandbox(fhir_server, identity, None).test_client()
    patient_id = fresh_patient("cs-clean-chart")
    assert 'id="launch-countersign"' not in client.get(f"/patients/{patient_id}").get_data(as_text=True)
    assert launch(client, patient_id, user="cmio").status_code == 409
