"""Every path that writes to or reads from the EHR, against the real HAPI FHIR server: the
integration check an integration engineer runs (and its hint when HAPI refuses), change control
written back, the synthetic cohort, the sandbox EHR's signing session (accept as a transaction,
override, complete signing) with the CMIO's patient view reading the write-back from HAPI with the
user's own token, and the EHR's prefetch right after an order is signed (HAPI caches searches)."""

from __future__ import annotations

import json
import re
import secrets
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import requests
from click.testing import CliRunner
from flask import Flask
from flask.testing import FlaskClient

from app import WORKER_KEY, create_app
from app.audit.outbox import CARD_SET, DECISION, DELIVERED
from app.cli import main
from app.migrate import upgrade
from app.settings import Settings, WriteBackServer
from cds_hooks.auth import TrustedClient
from fhir_profiles.audit_events import hook_call_audit_event
from fhir_profiles.common import DELIVERY_TAG_SYSTEM, PROFILE_CDS_CALL_AUDIT
from fhir_profiles.device import MODEL_VERSION_SYSTEM
from sandbox import demo_smart
from sandbox.ehr import SandboxConfig
from sandbox.ehr import create_app as create_sandbox_app
from sandbox.ehr.cds_client import SANDBOX_ISSUER, ClientIdentity
from sandbox.ehr.synthetic.cohort import cohort
from sandbox.ehr.synthetic.loader import load_cohort
from sandbox.ehr.synthetic.resources import SYNTHETIC_TAG
from sandbox.integration_check.hints import outcome_hint
from sandbox.mock_ehr_auth import MockEhr
from tests.hapi_helpers import count, search_all, validation_errors
from tests.live_server import LiveServer
from tests.smart_helpers import authorize_at_ehr, local
from tests.test_fhir_profiles import FACTS
from tests.writeback_helpers import drain, put, statuses, writeback_settings

pytestmark = pytest.mark.hapi
HTEST = f"{SYNTHETIC_TAG['system']}|{SYNTHETIC_TAG['code']}"
TABLE_COLUMNS = ["step", "check", "expected", "found", "result"]
RENAL = "cs-renal-metformin"
STEPS_THAT_WRITE = ("patient-view", "order-select", "order-sign", "accept", "override")
STEPS_THAT_WRITE += ("encounter-discharge", "sign draft")


@pytest.fixture
def fhir_server(hapi_server: str) -> str:
    """Every fixture of this module that talks to "the EHR's FHIR server" talks to HAPI."""
    return hapi_server


def table(output: str) -> list[list[str]]:
    """The rows of the integration check's table (fix hints and the summary left out)."""
    lines = output.splitlines()
    assert lines[0].split() == TABLE_COLUMNS, output
    rows = [re.split(r"\s{2,}", line.strip()) for line in lines[1:] if line and not line.startswith(" ")]
    return [row for row in rows if len(row) == len(TABLE_COLUMNS)]


def test_the_integration_check_passes_on_hapi_with_everything_valid_by_its_validate(hapi_server):
    result = CliRunner().invoke(main, ["integration-test", "--fhir-url", hapi_server])

    assert result.exit_code == 0, result.output
    rows = table(result.stdout)
    assert [row for row in rows if row[-1] != "pass"] == []
    assert "all checks passed" in result.stdout
    validated = {row[0]: int(row[3]) for row in rows if row[1] == "valid ($validate)"}
    # HAPI offers $validate: what every step wrote is validated, none skipped
    assert set(validated) == set(STEPS_THAT_WRITE)
    assert all(found > 0 for found in validated.values()), validated


def hapi_refusal(url: str, body: dict) -> dict:
    """HAPI's OperationOutcome for a body it refuses (nothing is written)."""
    answer = requests.post(url, json=body, headers={"Content-Type": "application/fhir+json"}, timeout=60)
    assert answer.status_code == 422, answer.text
    return answer.json()


def transaction_without_full_url() -> dict:
    """What the synthetic cohort's loader used to send: a PUT entry with a relative reference."""
    flag_id = f"f{uuid.uuid4().hex[:8]}"
    flag = {"resourceType": "Flag", "id": flag_id, "status": "active", "code": {"text": "test"}}
    flag["subject"] = {"reference": "Patient/p"}
    request = {"method": "PUT", "url": f"Flag/{flag_id}"}
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": flag, "request": request}],
    }


def test_the_checks_fix_hint_for_a_hapi_refusal_names_what_hapi_names(hapi_server):
    """HAPI adds ``operationoutcome-issue-*`` extensions (StructureDefinition URLs) to every issue
    and lists its warnings with the errors: the hint names a profile only when an error does."""
    broken = hook_call_audit_event(FACTS, "GuidanceResponse/g") | {"action": "R"}  # the profile fixes E

    by_profile = outcome_hint(422, hapi_refusal(f"{hapi_server}/AuditEvent", broken))
    by_structure = outcome_hint(422, hapi_refusal(hapi_server, transaction_without_full_url()))

    assert by_profile.startswith(f"the server refuses profile {PROFILE_CDS_CALL_AUDIT} at AuditEvent.action:")
    assert "the server refuses profile" not in by_structure
    assert by_structure.endswith("Bundle entry missing fullUrl")


def test_a_paused_model_is_on_hapi_as_change_control_audit_event_and_provenance(
    make_app, hapi_server, monkeypatch
):
    app = make_app(**writeback_settings(hapi_server), writeback_default_server=hapi_server)
    approver = f"Practitioner/cmio-{uuid.uuid4().hex[:8]}"
    put(
        hapi_server,
        {"resourceType": "Practitioner", "id": approver.split("/")[1], "name": [{"family": "Osei"}]},
    )
    reason = f"Cluster of renal-dose overrides under review ({uuid.uuid4().hex[:8]})"
    settings = app.config["COUNTERSIGN"]
    monkeypatch.setenv("COUNTERSIGN_DATABASE_URL", settings.database_url)
    monkeypatch.setenv("COUNTERSIGN_WRITEBACK_SERVERS", json.dumps([{"base_url": hapi_server}]))
    monkeypatch.setenv("COUNTERSIGN_WRITEBACK_DEFAULT_SERVER", hapi_server)
    monkeypatch.setenv("COUNTERSIGN_OUTBOX_IN_PROCESS", "false")
    paused = CliRunner().invoke(
        main,
        ["model", "pause", "medication-safety", "--approver", approver, "--role", "cmio", "--reason", reason],
    )
    assert paused.exit_code == 0, paused.output
    drain(app.extensions[WORKER_KEY])

    assert statuses(app) == {DELIVERED: 1}
    (device,) = search_all(
        hapi_server, "Device", identifier=f"{MODEL_VERSION_SYSTEM}|medication-safety-1.0.0"
    )
    device_ref = f"Device/{device['id']}"
    (audit,) = [
        a for a in search_all(hapi_server, "AuditEvent", entity=device_ref) if reason in a["outcomeDesc"]
    ]
    assert audit["subtype"][1]["code"] == "model-version-paused"
    assert audit["agent"][0]["who"] == {"reference": approver}
    (provenance,) = [
        p
        for p in search_all(hapi_server, "Provenance", target=device_ref)
        if p["reason"][0]["text"] == reason
    ]
    assert provenance["agent"][0]["who"] == {"reference": approver}
    assert validation_errors(hapi_server, audit) == []
    assert validation_errors(hapi_server, provenance) == []


def test_the_whole_synthetic_cohort_is_on_hapi_once_however_often_it_is_loaded(hapi_server):
    suffix = f"-{uuid.uuid4().hex[:8]}"
    patients = cohort(suffix=suffix)
    ids = ",".join(patient.id for patient in patients)
    expected = Counter(r["resourceType"] for patient in patients for r in patient.resources)

    for _ in range(2):
        load_cohort(hapi_server, suffix=suffix)

    assert len(patients) == 15 and count(hapi_server, "Patient", _tag=HTEST, _id=ids) == 15
    for resource_type in ("Condition", "MedicationRequest", "Observation", "Encounter"):
        assert count(hapi_server, resource_type, patient=ids) == expected[resource_type], resource_type


@dataclass
class Stack:
    """Countersign on a real port (the sandbox EHR calls it over HTTP; the test client plays the
    CMIO's browser), the sandbox EHR's API, and the mock SMART EHR in front of HAPI."""

    countersign: Flask
    ehr: FlaskClient
    auth: MockEhr


@pytest.fixture
def stack(
    make_settings: Callable[..., Settings], hapi_server: str, identity: ClientIdentity
) -> Iterator[Stack]:
    secret = secrets.token_urlsafe(24)
    server = LiveServer()
    with demo_smart.mock_ehr(hapi_server, server.url, secret) as auth:
        settings = make_settings(
            public_base_url=server.url,
            trusted_clients=[TrustedClient(iss=SANDBOX_ISSUER, jwks=identity.jwks())],
            writeback_servers=[WriteBackServer(base_url=hapi_server)],
            writeback_default_server=hapi_server,
            outbox_in_process=False,
            smart_ehrs=[demo_smart.smart_ehr(auth.state.public_url, secret, server.url)],
            smart_allow_http_loopback=True,
        )
        upgrade(settings.database_url)
        countersign = create_app(settings)
        server.serve(countersign)
        launcher = demo_smart.launcher(auth.state.public_url, server.url)
        sandbox = SandboxConfig(hapi_server, f"{server.url}/cds-services", identity, launcher=launcher)
        yield Stack(countersign, create_sandbox_app(sandbox).test_client(), auth)
        server.stop()


def post(ehr: FlaskClient, path: str, body: dict | None = None) -> dict:
    response = ehr.post(path, json=body or {})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def cmio_in_chart(stack: Stack, patient_id: str) -> FlaskClient:
    """The CMIO clicks the chart's Countersign button: the sandbox EHR asks the mock EHR for a
    launch, and the browser (the test client) follows the EHR launch to the app."""
    url = post(stack.ehr, f"/api/patients/{patient_id}/smart-launch", {"user": "cmio"})["url"]
    browser = stack.countersign.test_client()
    launched = browser.get(local(url))
    assert launched.status_code == 303, launched.get_data(as_text=True)
    started = browser.get(local(launched.headers["Location"]))
    landed = browser.get(local(authorize_at_ehr(started.headers["Location"])))
    assert landed.status_code == 303, landed.get_data(as_text=True)
    return browser


def write_backs(page: str, card_uuid: str) -> dict[str, tuple[str, str | None]]:
    """What the patient page says of the card's AI output and of its decision: the words the CMIO
    reads, and the link to the Provenance on the EHR, if any."""
    card = re.search(rf'data-card="{card_uuid}">(.*?)</li>', page, re.S)
    assert card, f"card {card_uuid} is not on the page"
    shown = {}
    for record, body in re.findall(r'data-record="(\w+)">(.*?)</dd>', card.group(1), re.S):
        link = re.search(r'href="([^"]+)"', body)
        shown[record] = (" ".join(re.sub(r"<[^>]+>", " ", body).split()), link.group(1) if link else None)
    return shown


def heading_count(page: str, heading: str) -> int:
    return int(re.search(rf"{heading} \((\d+)\)", page).group(1))


def linked(hapi_server: str, link: str | None) -> dict:
    """The Provenance a page links to, read from HAPI by its id."""
    assert link is not None
    return requests.get(f"{hapi_server}/Provenance/{link.rsplit('/', 1)[1]}", timeout=10).json()


def targets(provenance: dict) -> list[str]:
    return [target["reference"].split("/_history/")[0] for target in provenance["target"]]


def test_a_signing_session_in_the_sandbox_ehr_lands_on_hapi_and_the_cmio_reads_it_back(
    stack, hapi_server, fresh_patient
):
    patient_id = fresh_patient(RENAL)
    for orderable in ("gabapentin-300-tid", "ibuprofen-400-tid"):
        post(stack.ehr, f"/api/patients/{patient_id}/drafts", {"orderable": orderable})
    signing = post(stack.ehr, f"/api/patients/{patient_id}/sign")
    cards = {
        item["card"]["extension"]["health.countersign.ai"]["rule"]: item["card"] for item in signing["cards"]
    }
    renal, nsaid = cards["gabapentin-egfr-15-30"], cards["nsaid-egfr-below-30"]
    post(stack.ehr, f"/api/cards/{renal['uuid']}/accept", {"suggestion": renal["suggestions"][0]["uuid"]})
    override = {"reason": "risk-benefit-ratio", "comment": "Three days only, with renal monitoring"}
    post(stack.ehr, f"/api/cards/{nsaid['uuid']}/override", override)
    signed = post(stack.ehr, f"/api/patients/{patient_id}/sign/complete")["signed"]

    # The EHR's record on HAPI: the accepted change applied, both orders signed.
    assert {order["status"] for order in signed} == {"active"}
    active = search_all(hapi_server, "MedicationRequest", patient=patient_id, status="active")
    (gabapentin,) = [o for o in active if "gabapentin" in o["medicationCodeableConcept"]["text"]]
    assert gabapentin["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 600
    assert any(label["code"] == "AIAST" for label in gabapentin["meta"]["security"])
    assert count(hapi_server, "MedicationRequest", patient=patient_id, status="draft") == 0

    # The CMIO opens Countersign from the chart while the write-back is queued, and again once it landed.
    cmio = cmio_in_chart(stack, patient_id)
    queued = cmio.get("/app/patient").get_data(as_text=True)
    assert write_backs(queued, renal["uuid"])["decision"][0] == "pending"
    drain(stack.countersign.extensions[WORKER_KEY])
    landed = cmio.get("/app/patient").get_data(as_text=True)

    # On HAPI: one Provenance and one AuditEvent per record (each card set shown, the acceptance,
    # the override), each delivery tag once, and the override's Task.
    assert set(statuses(stack.countersign)) == {DELIVERED}  # sign-ins too: nothing pending or dead
    messages = statuses(stack.countersign, CARD_SET, DECISION)[DELIVERED]
    assert messages >= 4
    provenance = search_all(hapi_server, "Provenance", entity=f"Patient/{patient_id}")
    audits = search_all(hapi_server, "AuditEvent", patient=patient_id)
    assert len(provenance) == len(audits) == messages
    tags = [
        t["code"] for r in provenance + audits for t in r["meta"]["tag"] if t["system"] == DELIVERY_TAG_SYSTEM
    ]
    assert len(tags) == len(set(tags)) == 2 * messages
    (task,) = search_all(hapi_server, "Task", patient=patient_id)

    # The CMIO's page, read from HAPI with the CMIO's token: every record on the EHR, linked.
    assert heading_count(landed, "Provenance in the EHR") == messages
    assert heading_count(landed, "AuditEvents in the EHR") == messages
    shown = {name: write_backs(landed, card["uuid"]) for name, card in (("renal", renal), ("nsaid", nsaid))}
    for records in shown.values():
        assert [words for words, _ in records.values()] == ["on the EHR Provenance"] * 2, records
        assert all(link.startswith(f"{stack.auth.iss}/Provenance/") for _, link in records.values())
    assert targets(linked(hapi_server, shown["renal"]["output"][1]))[0].startswith("RequestGroup/")
    assert targets(linked(hapi_server, shown["renal"]["decision"][1])) == [
        f"MedicationRequest/{gabapentin['id']}"
    ]
    assert targets(linked(hapi_server, shown["nsaid"]["decision"][1])) == [f"Task/{task['id']}"]


def test_an_order_signed_a_moment_ago_is_in_the_next_calls_prefetch(stack, fresh_patient):
    """HAPI answers a search repeated within 60 s from its cache: the EHR's prefetch of the active
    medications must still hold the ibuprofen signed a moment ago, or a second NSAID passes unseen."""
    patient_id = fresh_patient("cs-clean-chart")
    post(stack.ehr, f"/api/patients/{patient_id}/drafts", {"orderable": "ibuprofen-400-tid"})
    post(stack.ehr, f"/api/patients/{patient_id}/sign")
    post(stack.ehr, f"/api/patients/{patient_id}/sign/complete")

    shown = post(stack.ehr, f"/api/patients/{patient_id}/drafts", {"orderable": "naproxen-500-bid"})

    rules = [item["card"]["extension"]["health.countersign.ai"]["rule"] for item in shown["cards"]]
    assert rules == ["duplicate-nsaid"]
