"""Model versions: a shadow version beside the active one, two-person promotion, one-step rollback.

Through the governance core, the JSON API (signed-in governors) and the CLI; the next hook call is
answered by the version change control chose, on every worker process within a second."""

from __future__ import annotations

import json
import re
import time

import pytest
import requests
from click.testing import CliRunner
from sqlalchemy import func, text
from sqlmodel import Session, select

from app import DATABASE_KEY
from app.audit.tables import CardSet
from app.cli import main
from app.governance.change_control import ChangeRefused, Governor, NotFound
from app.governance.lifecycle import version_statuses
from app.governance.promotion import approve, pending, propose, rollback, withdraw
from tests.builders import medication_request, order_sign_request
from tests.conftest import BASE_URL
from tests.governance_helpers import CMIO, SAFETY_OFFICER, change, registry
from tests.smart_helpers import ehr_launch, smart_settings
from tests.test_governance_cache import WITHIN, _took_effect, seconds_until, workers

SERVICE = "/cds-services/medication-safety"
MODEL = "medication-safety"


def governed(app, act, *args, governor: Governor = CMIO, reason: str = "Shadow comparison reviewed"):
    return act(app.extensions[DATABASE_KEY], registry(app), *args, governor=governor, reason=reason,
               writeback_target=None)  # fmt: skip


def statuses(app) -> dict[str, str]:
    with app.extensions[DATABASE_KEY].connect() as connection:
        return dict(sorted(version_statuses(connection, registry(app).versions(MODEL)).items()))


def answering_version(client, auth) -> str | None:
    """The version named by the card of a metformin order at eGFR 25 (renal limit), if any."""
    body = order_sign_request([medication_request("d1")])
    cards = client.post(SERVICE, json=body, headers=auth(SERVICE)).get_json()["cards"]
    return re.search(r"\d+\.\d+\.\d+$", cards[0]["source"]["label"]).group(0) if cards else None


def in_shadow(app) -> None:
    change(app, "shadow", version="1.1.0", reason="Silent validation of 1.1.0")


def proposed(app) -> int:
    in_shadow(app)
    return governed(app, propose, registry(app).card(MODEL, "1.1.0")).id


def test_a_shadow_version_runs_on_the_same_calls_and_its_cards_are_never_shown(app, client, auth):
    in_shadow(app)
    assert answering_version(client, auth) == "1.0.0"
    app.extensions["cds_hooks"].backend.shadow.drain()
    with Session(app.extensions[DATABASE_KEY]) as session:
        sets = session.exec(select(CardSet).order_by(CardSet.id)).all()
    assert [(s.model_version, s.disposition) for s in sets] == [("1.0.0", "issued"), ("1.1.0", "shadow")]
    assert sets[0].hook_instance == sets[1].hook_instance
    assert all(s.latency_ms is not None and s.latency_ms >= 0 for s in sets)


def test_promotion_needs_a_second_governor_then_the_next_call_is_answered_by_the_new_version(
    both_databases, make_app, auth
):
    app = make_app(database_url=both_databases)
    client = app.test_client()
    proposal = proposed(app)
    with pytest.raises(ChangeRefused, match="may not approve it: a different governor"):
        governed(app, approve, proposal)
    assert answering_version(client, auth) == "1.0.0"
    approval = governed(app, approve, proposal, governor=SAFETY_OFFICER)
    assert (approval.act, approval.proposal, approval.from_version) == ("approve", proposal, "1.0.0")
    assert statuses(app) == {"1.0.0": "retired", "1.1.0": "active"}
    assert answering_version(client, auth) == "1.1.0"
    governed(app, rollback, MODEL, reason="Incident: renal cards missing on ward 4")
    assert statuses(app) == {"1.0.0": "active", "1.1.0": "retired"}
    assert answering_version(client, auth) == "1.0.0"
    with pytest.raises(ChangeRefused, match="no previous version to roll back to"):
        governed(app, rollback, MODEL)


def test_a_pending_proposal_is_visible_and_can_be_withdrawn(app):
    proposal = proposed(app)
    with app.extensions[DATABASE_KEY].connect() as connection:
        assert [p.id for p in pending(connection, MODEL)] == [proposal]
    with pytest.raises(ChangeRefused, match=f"proposal #{proposal} .* is pending"):
        governed(app, propose, registry(app).card(MODEL, "1.1.0"))
    governed(app, withdraw, proposal, reason="Wait for a month of shadow data")
    with app.extensions[DATABASE_KEY].connect() as connection:
        assert pending(connection, MODEL) == []
    with pytest.raises(ChangeRefused, match="already withdrawn"):
        governed(app, approve, proposal, governor=SAFETY_OFFICER)
    assert statuses(app) == {"1.0.0": "active", "1.1.0": "shadow"}


def test_what_cannot_be_promoted_or_rolled_back_is_refused_with_the_reason(app):
    with pytest.raises(ChangeRefused, match="is paused; only a version in shadow"):
        governed(app, propose, registry(app).card(MODEL, "1.1.0"))
    with pytest.raises(ChangeRefused, match="no previous version to roll back to"):
        governed(app, rollback, MODEL)
    with pytest.raises(NotFound, match="no proposal #99"):
        governed(app, approve, 99, governor=SAFETY_OFFICER)
    with pytest.raises(ChangeRefused, match="a version goes active only by a promotion"):
        change(app, "resume", version="1.1.0")
    in_shadow(app)
    change(app, "pause", version="1.1.0")
    with pytest.raises(ChangeRefused, match="only by a promotion"):
        change(app, "resume", version="1.1.0")
    with app.extensions[DATABASE_KEY].connect() as connection:
        kinds = connection.execute(text("SELECT kind FROM ledger_entry ORDER BY seq")).scalars().all()
    assert kinds == ["model-status-changed", "model-status-changed"]


def test_an_approval_is_refused_when_the_active_version_changed_since_the_proposal(app):
    proposal = proposed(app)
    change(app, "pause", version="1.0.0", reason="Lab interface fault")
    with pytest.raises(ChangeRefused, match=r"active version of medication-safety is none now, not 1\.0\.0"):
        governed(app, approve, proposal, governor=SAFETY_OFFICER)


@pytest.fixture
def smart_app(make_app, ehr):
    return make_app(**smart_settings(ehr))


@pytest.fixture
def governors(smart_app, ehr):
    """Signed-in API clients for the CMIO and the safety officer, with their CSRF headers."""

    def signed_in(user: str):
        client = smart_app.test_client()
        assert ehr_launch(client, ehr, user).status_code == 303
        page = client.get(f"/app/models/{MODEL}").get_data(as_text=True)
        csrf = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        return lambda path, body: client.post(path, json=body, headers={"X-CSRF-Token": csrf})

    return signed_in("cmio-1"), signed_in("so-1")


def test_the_api_runs_the_same_loop_and_refuses_self_approval_with_a_409(smart_app, governors, auth):
    cmio, safety_officer = governors
    shadow = cmio(f"/api/models/{MODEL}/status", {"status": "shadow", "version": "1.1.0", "reason": "Shadow"})
    assert shadow.status_code == 200, shadow.get_json()
    made = cmio(
        f"/api/models/{MODEL}/proposals", {"version": "1.1.0", "reason": "Fewer PPI duplicate alerts"}
    )
    assert made.status_code == 201, made.get_json()
    proposal = made.get_json()
    assert (proposal["act"], proposal["version"], proposal["fromVersion"], proposal["by"]) == (
        "propose", "1.1.0", "1.0.0", "Practitioner/cmio-1",
    )  # fmt: skip
    detail = smart_app.test_client().get(f"/api/models/{MODEL}").get_json()
    assert [p["id"] for p in detail["pendingProposals"]] == [proposal["id"]]
    own = cmio(f"/api/proposals/{proposal['id']}/approve", {"reason": "I approve my own"})
    assert own.status_code == 409
    assert "may not approve it" in own.get_json()["issue"][0]["diagnostics"]
    approved = safety_officer(f"/api/proposals/{proposal['id']}/approve", {"reason": "Comparison reviewed"})
    assert approved.status_code == 200, approved.get_json()
    assert approved.get_json()["by"] == "PractitionerRole/so-1"
    assert answering_version(smart_app.test_client(), auth) == "1.1.0"
    rolled = cmio(f"/api/models/{MODEL}/rollback", {"reason": "Incident 4711"})
    assert rolled.status_code == 200 and rolled.get_json()["fromVersion"] == "1.0.0"
    assert answering_version(smart_app.test_client(), auth) == "1.0.0"
    again = cmio(f"/api/models/{MODEL}/rollback", {"reason": "Once more"})
    assert again.status_code == 409 and "no previous version" in again.get_json()["issue"][0]["diagnostics"]


@pytest.mark.parametrize(
    ("path", "body", "status", "expression"),
    [
        (f"/api/models/{MODEL}/proposals", {"reason": "no version"}, 400, "version"),
        (f"/api/models/{MODEL}/proposals", {"version": "9.9.9", "reason": "x"}, 404, "version"),
        (f"/api/models/{MODEL}/proposals", {"version": "1.1.0"}, 400, "reason"),
        ("/api/models/nope/proposals", {"version": "1.1.0", "reason": "x"}, 404, None),
        ("/api/proposals/99/approve", {"reason": "x"}, 404, None),
        ("/api/proposals/99/withdraw", "not json", 400, "$"),
        (f"/api/models/{MODEL}/rollback", {"reason": " "}, 400, "reason"),
        ("/api/models/nope/rollback", {"reason": "x"}, 404, None),
    ],
)
def test_bad_promotion_requests_get_an_operation_outcome_and_record_nothing(
    smart_app, governors, path, body, status, expression
):
    cmio, _ = governors
    response = cmio(path, body)
    assert response.status_code == status
    issue = response.get_json()["issue"][0]
    assert issue.get("expression", [None])[0] == expression
    with smart_app.extensions[DATABASE_KEY].connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM model_promotion")).scalar() == 0


def test_the_cli_proposes_approves_and_rolls_back_through_the_same_code(make_app, monkeypatch):
    app = make_app()
    monkeypatch.setenv("COUNTERSIGN_DATABASE_URL", app.config["COUNTERSIGN"].database_url)
    in_shadow(app)
    runner = CliRunner()

    def run(*arguments: str, who: tuple[str, str] = ("Practitioner/cmio-1", "cmio")):
        command = ["model", *arguments, "--approver", who[0], "--role", who[1], "--reason", "CLI loop"]
        return runner.invoke(main, command)

    made = run("propose", MODEL, "--version", "1.1.0")
    assert made.exit_code == 0, made.output
    proposal = re.search(r"proposal #(\d+)", made.output).group(1)
    refused = run("approve", proposal)
    assert refused.exit_code == 1 and "may not approve it" in refused.output
    approved = run("approve", proposal, who=("PractitionerRole/so-1", "safety-officer"))
    assert approved.exit_code == 0 and "1.1.0: approved" in approved.output
    listed = runner.invoke(main, ["model", "list"])
    assert f"{MODEL}  1.1.0  active" in listed.output and f"{MODEL}  1.0.0  retired" in listed.output
    rolled = run("rollback", MODEL)
    assert rolled.exit_code == 0 and "rolled back from 1.1.0 to 1.0.0" in rolled.output
    assert statuses(app) == {"1.0.0": "active", "1.1.0": "retired"}


@pytest.mark.integration
def test_a_promotion_and_a_rollback_reach_every_worker_process_within_a_second(
    both_databases, make_app, sign, client_jwks, tmp_path
):
    app = make_app(database_url=both_databases)
    body = order_sign_request([medication_request("d1")])

    def version(url: str) -> str:
        headers = {"Authorization": f"Bearer {sign(BASE_URL + SERVICE)}"}
        cards = requests.post(url + SERVICE, json=body, headers=headers, timeout=10).json()["cards"]
        return json.dumps(cards[0]["source"]["label"])

    proposal = proposed(app)
    with workers(both_databases, client_jwks, tmp_path) as urls:
        assert all("1.0.0" in version(url) for url in urls), "a first call starts each worker's watcher"
        time.sleep(0.6)
        assert all("1.0.0" in version(url) for url in urls), "and, once it vouches, this one fills the cache"
        shadow_runs = select(func.count()).where(CardSet.disposition == "shadow")

        def recorded_shadows() -> int:
            with app.extensions[DATABASE_KEY].connect() as connection:
                return connection.execute(shadow_runs).scalar()

        seconds_until(lambda: recorded_shadows() == 2 * len(urls), timeout=60)  # each worker's shadow process
        governed(app, approve, proposal, governor=SAFETY_OFFICER)
        assert max(_took_effect(urls, lambda url: "1.1.0" in version(url))) < WITHIN
        governed(app, rollback, MODEL, reason="Incident: one-step rollback")
        assert max(_took_effect(urls, lambda url: "1.0.0" in version(url))) < WITHIN


def test_the_model_page_names_the_version_whose_pause_silences_the_model_as_the_hook_path_does(
    app, client, auth
):
    governed(app, approve, proposed(app), governor=SAFETY_OFFICER)
    change(app, "pause", version="1.1.0", reason="Lab interface fault")
    assert answering_version(client, auth) is None
    with Session(app.extensions[DATABASE_KEY]) as session:
        last = session.exec(select(CardSet).order_by(CardSet.id.desc())).first()
    assert (last.disposition, last.model_version) == ("paused", "1.1.0")  # not 1.0.0, retired earlier
    page = client.get(f"/app/models/{MODEL}").get_data(as_text=True)
    assert "<h1>Countersign Medication Safety 1.1.0</h1>" in page and 'id="current-status">paused<' in page
