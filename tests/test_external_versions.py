"""The hospital's own model as a version of a built-in service: it runs in shadow beside the
LACE index, is promoted by two governors, answers the next call as an external model, fails closed
(timeout, malformed answer: no card, the reason recorded, never a 500), and is rolled back.

Its server is a real HTTP server speaking KServe v2 (``tests/model_server.py``); the write-back
goes to the strict FHIR test server, which accepts every message the loop leaves."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from ruamel.yaml import YAML
from sqlalchemy import text
from sqlmodel import Session, select

from app import DATABASE_KEY, WORKER_KEY
from app.audit.tables import CardSet
from app.cli import main
from app.files.validated import InvalidFile, load_yaml
from app.governance.model_card import CARDS_DIRECTORY, load_model_cards
from app.governance.promotion import approve, propose
from tests.builders import PATIENT_ID, patient
from tests.governance_helpers import CMIO, SAFETY_OFFICER, registry
from tests.model_server import KServeModelServer
from tests.smart_helpers import smart_settings
from tests.test_external_model import EXAMPLE
from tests.test_promotion import governors  # noqa: F401 (a fixture, used by name)
from tests.test_readmission_risk import discharge_request, high_risk_chart, prefetch_for
from tests.writeback_helpers import drain, put, search, statuses, writeback_settings

DCM = "http://dicom.nema.org/resources/ontology/DCM"

SERVICE = "/cds-services/readmission-risk"
MODEL = "readmission-risk"
DEADLINE = 0.5


def external_card(url: str, **changes: object) -> dict:
    """readmission-risk 2.0.0: the LACE card's governance text, served by the hospital's server."""
    card = load_yaml(CARDS_DIRECTORY / "readmission-risk-1.0.0.yaml")
    for name in ("knowledge_base", "measured"):
        card.pop(name)
    endpoint = copy.deepcopy(EXAMPLE["endpoint"]) | {"url": url, "deadline_seconds": DEADLINE}
    return card | {"version": "2.0.0", "name": "Hospital readmission-30d", "status": "shadow",
                   "kind": "Machine-Learning", "endpoint": endpoint} | changes  # fmt: skip


def write_cards(directory: Path, *cards: dict) -> Path:
    directory.mkdir(exist_ok=True)
    for card in cards:
        with (directory / f"{card['id']}-{card['version']}.yaml").open("w") as handle:
            YAML().dump(card, handle)
    return directory


@pytest.fixture
def model_server() -> Iterator[KServeModelServer]:
    with KServeModelServer() as server:
        yield server


@pytest.fixture
def governed_app(make_app, model_server, fhir_server, tmp_path):
    cards = write_cards(tmp_path / "cards", external_card(model_server.url))
    return make_app(
        model_cards_dir=cards, **writeback_settings(fhir_server), writeback_default_server=fhir_server
    )


def discharge(app, auth, fhir_server: str = "http://fhir.example/fhir") -> tuple[int, list[dict]]:
    body = discharge_request(prefetch_for(high_risk_chart())) | {"fhirServer": fhir_server}
    response = app.test_client().post(SERVICE, json=body, headers=auth(SERVICE))
    return response.status_code, response.get_json()["cards"]


def last_card_set(app) -> CardSet:
    with Session(app.extensions[DATABASE_KEY]) as session:
        return session.exec(select(CardSet).order_by(CardSet.id.desc())).first()


def act(app, action, *args, governor=CMIO, reason="Readmission model loop"):
    return action(app.extensions[DATABASE_KEY], registry(app), *args, governor=governor, reason=reason,
                  writeback_target=app.config["COUNTERSIGN"].writeback_target(None))  # fmt: skip


@pytest.fixture
def smart_app(make_app, model_server, fhir_server, ehr, tmp_path):
    """Governors sign in through the mock EHR; the write-back goes to the strict FHIR server."""
    cards = write_cards(tmp_path / "cards", external_card(model_server.url))
    return make_app(
        model_cards_dir=cards,
        **smart_settings(ehr),
        **writeback_settings(fhir_server),
        writeback_default_server=fhir_server,
    )


def test_an_external_version_runs_in_shadow_is_promoted_fails_closed_and_is_rolled_back(
    smart_app,
    governors,  # noqa: F811 (the fixture imported above)
    model_server,
    fhir_server,
    auth,
):
    app, (cmio, safety_officer) = smart_app, governors
    tag = uuid.uuid4().hex[:8]
    put(fhir_server, patient())  # the shadow run's AuditEvent names the patient
    status, cards = discharge(app, auth, fhir_server)
    assert status == 200 and cards[0]["source"]["label"] == "Countersign Readmission Risk (LACE) 1.0.0"
    app.extensions["cds_hooks"].backend.shadow.drain()
    shadow = last_card_set(app)
    assert (shadow.model_version, shadow.disposition) == ("2.0.0", "shadow")
    assert model_server.request_count == 1
    sent = json.dumps(model_server.last_request)
    assert PATIENT_ID not in sent and "Patient" not in sent and "1956" not in sent

    made = cmio(f"/api/models/{MODEL}/proposals", {"version": "2.0.0", "reason": f"Own model {tag}"})
    assert made.status_code == 201, made.get_json()
    approved = safety_officer(
        f"/api/proposals/{made.get_json()['id']}/approve", {"reason": f"Reviewed {tag}"}
    )
    assert approved.status_code == 200, approved.get_json()
    status, [card] = discharge(app, auth, fhir_server)
    assert status == 200
    assert card["source"]["label"] == "Hospital readmission-30d 2.0.0 (external model)"
    assert card["summary"].startswith("30-day readmission risk ")

    for mode, reason in (("slow", f"timeout after {DEADLINE} s"), ("wrong-shape", "malformed answer")):
        model_server.mode = mode
        assert discharge(app, auth, fhir_server) == (200, [])
        recorded = last_card_set(app)
        assert (recorded.disposition, recorded.model_version) == ("model-unavailable", "2.0.0")
        assert recorded.failure.startswith(reason)
    model_server.mode = "normal"

    rolled = cmio(f"/api/models/{MODEL}/rollback", {"reason": f"Incident: the server times out {tag}"})
    assert rolled.status_code == 200, rolled.get_json()
    status, [card] = discharge(app, auth, fhir_server)
    assert card["source"]["label"] == "Countersign Readmission Risk (LACE) 1.0.0"
    with app.extensions[DATABASE_KEY].connect() as connection:
        suppressed = "SELECT content FROM ledger_entry WHERE kind = 'invocation-suppressed' ORDER BY seq"
        failures = connection.execute(text(suppressed)).scalars().all()
    assert [json.loads(entry)["guardrails"][0]["guardrail"] for entry in failures] == [
        "model-unavailable"
    ] * 2
    drain(app.extensions[WORKER_KEY])
    assert set(statuses(app)) == {"delivered"}, "the FHIR server accepted every message of the loop"
    _assert_each_step_audited(fhir_server, tag, shadow.hook_instance)


def _assert_each_step_audited(fhir_server: str, tag: str, shadow_call: str) -> None:
    """The proposal, the approval, the rollback (ours: found by their reasons) and the shadow run
    (found by its call)."""
    ours = [
        a
        for a in search(fhir_server, "AuditEvent", entity=f"Patient/{PATIENT_ID}")
        if shadow_call in json.dumps(a)
    ]
    ours += [a for a in search(fhir_server, "AuditEvent", type=f"{DCM}|110113") if tag in json.dumps(a)]
    codes = {coding.get("code") for audit in ours for coding in audit.get("subtype", [])}
    acts = {"model-promotion-proposed", "model-promotion-approved", "model-version-rolled-back", "shadow"}
    assert acts <= codes, sorted(codes)


@pytest.mark.parametrize("mode", ["error-500", "not-json", "nan", "wrong-id", "redirect"])
def test_an_active_external_model_that_cannot_answer_gives_no_card_and_never_a_500(
    governed_app, model_server, auth, mode
):
    proposal = act(governed_app, propose, registry(governed_app).card(MODEL, "2.0.0")).id
    act(governed_app, approve, proposal, governor=SAFETY_OFFICER)
    model_server.mode = mode
    assert discharge(governed_app, auth) == (200, [])
    assert last_card_set(governed_app).failure


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda card: card["endpoint"].pop("deadline_seconds"),
            r"endpoint\.deadline_seconds: Field required",
        ),
        (lambda card: card.update(colour="blue"), r"colour: Extra inputs are not permitted"),
        (lambda card: card.update(status="active"), r"status: readmission-risk 1\.0\.0 is already active"),
        (
            lambda card: card.update(knowledge_base="x.yaml"),
            r"endpoint: an external model has no knowledge_base",
        ),
    ],
)
def test_a_bad_card_stops_the_start_and_names_the_field(tmp_path, edit, message):
    card = external_card("http://127.0.0.1:9")
    edit(card)
    with pytest.raises(InvalidFile, match=message):
        load_model_cards(CARDS_DIRECTORY, write_cards(tmp_path / "cards", card))


def test_eval_measures_an_external_version_by_calling_its_server_and_writes_its_card(model_server, tmp_path):
    cards = write_cards(tmp_path / "cards", external_card(model_server.url))
    arguments = [
        "eval",
        MODEL,
        "--version",
        "2.0.0",
        "--size",
        "40",
        "--seed",
        "7",
        "--cards-dir",
        str(cards),
    ]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output
    assert model_server.request_count == 40, "one inference per synthetic patient"
    card = load_model_cards(cards).card(MODEL, "2.0.0")
    assert card.measured.cohort_size == 40
    assert card.measured.command == f"countersign eval {MODEL} --version 2.0.0 --size 40 --seed 7"
    assert {m.measure for m in card.measured.measures} == {"sensitivity", "ppv", "specificity"}
    assert card.source_attributes.internal_validity.startswith(
        f"Measured by `countersign eval {MODEL} --version 2.0.0"
    )
