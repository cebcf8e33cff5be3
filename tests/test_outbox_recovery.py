"""Operators can recover: ``countersign outbox status``, ``list --dead`` and ``retry`` through the
real command, against a FHIR server that refuses one kind of resource and is then fixed; the
output never shows the record's patient data, and a retry lands each record exactly once."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlalchemy import select
from sqlmodel import Session

from app import DATABASE_KEY, WORKER_KEY
from app.audit.ledger import LedgerEntry, verify_database
from app.audit.outbox import DEAD, DELIVERED, OutboxMessage
from app.audit.outbox_recovery import LEDGER_KIND
from app.cli import main
from tests.outbox_helpers import PRIVATE_COMMENT, issue_cards, on_server, outbox_app, override_all
from tests.test_metrics import scrape, value
from tests.writeback_helpers import drain, statuses

pytestmark = pytest.mark.integration
NEVER_PRINTED = ("Margaret", "Ellison", "1951", "88812345", PRIVATE_COMMENT, "Mrs", "prac-001")


@pytest.fixture
def database_url(both_databases: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return both_databases


def outbox_command(app, *args: str, ok: bool = True) -> str:
    """``countersign outbox …`` through click, in the app's context; its output (stdout + stderr)."""
    result = app.test_cli_runner().invoke(main, ["outbox", *args])
    assert (result.exit_code == 0) is ok, result.output
    return result.output


def dead_ids(app) -> list[int]:
    with Session(app.extensions[DATABASE_KEY]) as session:
        return list(session.scalars(select(OutboxMessage.id).where(OutboxMessage.status == DEAD)))


def assert_no_phi(output: str, patient_id: str) -> None:
    for secret in (*NEVER_PRINTED, patient_id):
        assert secret not in output


def test_a_refused_kind_is_dead_lettered_listed_without_phi_and_retried_once_fixed(make_app, auth, proxy):
    app = outbox_app(make_app, proxy)
    client, worker = app.test_client(), app.extensions[WORKER_KEY]
    patient_id = f"rf{uuid.uuid4().hex[:10]}"
    proxy.refuse("Task")
    cards = issue_cards(client, auth, proxy, patient_id, 2)
    override_all(client, auth, cards[:1])
    drain(worker)
    assert statuses(app) == {DELIVERED: 2, DEAD: 1}
    [dead] = dead_ids(app)

    status = outbox_command(app, "status")
    assert proxy.base_url in status and "breaker: closed" in status
    assert "0 pending, 2 delivered, 1 dead" in status
    assert "decision         dead       1" in status
    figures = json.loads(outbox_command(app, "status", "--json"))
    [target] = figures["targets"]
    assert (target["breaker"], target["messages"]) == ("closed", {"pending": 0, "delivered": 2, "dead": 1})
    dead_decisions = {"target": proxy.base_url, "kind": "decision", "status": "dead", "messages": 1}
    assert dead_decisions in figures["counts"]

    listing = outbox_command(app, "list", "--dead")
    assert f"#{dead} decision -> {proxy.base_url}  attempts 1" in listing
    assert "HTTP 422" in listing
    assert "error/business-rule [POLICY_REFUSED] at Bundle.entry[0].resource.where(id=…)" in listing
    assert "Resource Task refused for Patient/…" in listing
    assert_no_phi(listing, patient_id)
    [listed] = json.loads(outbox_command(app, "list", "--dead", "--json"))
    assert (listed["id"], listed["http_status"], listed["attempts"]) == (dead, 422, 1)
    assert listed["first_failed_at"] == listed["last_failed_at"] is not None
    assert listed["issues"][0]["code"] == "business-rule"
    assert_no_phi(json.dumps(listed), patient_id)

    scraped = scrape(client)
    assert value(scraped, "countersign_outbox_dead_letters", target=proxy.base_url) == 1
    assert value(scraped, "countersign_outbox_breaker_state", target=proxy.base_url) == 0

    proxy.up()  # the server's policy is fixed
    assert outbox_command(app, "retry", "--id", str(dead)) == f"requeued 1 dead letter(s): {dead}\n"
    drain(worker)
    assert statuses(app) == {DELIVERED: 3}
    [task] = on_server(proxy.upstream, "Task", patient=patient_id)
    assert task["identifier"][0]["value"] == f"urn:uuid:{cards[0]['uuid']}"
    assert value(scrape(client), "countersign_outbox_dead_letters", target=proxy.base_url) == 0
    with app.extensions[DATABASE_KEY].connect() as connection:
        assert verify_database(connection).intact
        [content] = connection.execute(select(LedgerEntry.content).where(LedgerEntry.kind == LEDGER_KIND))
    assert json.loads(content[0])["messages"] == [dead]


def test_retrying_a_write_that_did_land_creates_nothing_twice(make_app, auth, proxy):
    """The answer was lost (the server stored the Bundle, then said 422): the replay is idempotent.
    A record's Provenances go in its last transaction (``app.writeback.sender``), so when that
    answer is lost all of the card set and of the decision has landed."""
    app = outbox_app(make_app, proxy)
    client, worker = app.test_client(), app.extensions[WORKER_KEY]
    patient_id = f"lost{uuid.uuid4().hex[:10]}"
    proxy.refuse("Provenance", after_forwarding=True)
    override_all(client, auth, issue_cards(client, auth, proxy, patient_id, 1))
    drain(worker)
    assert statuses(app) == {DEAD: 2}
    landed = {kind: on_server(proxy.upstream, kind, patient=patient_id) for kind in ("Task", "AuditEvent")}
    assert (len(landed["Task"]), len(landed["AuditEvent"])) == (1, 2)

    proxy.up()
    assert outbox_command(app, "retry", "--all-dead").startswith("requeued 2 dead letter(s)")
    drain(worker)
    assert statuses(app) == {DELIVERED: 2}
    for kind, before in landed.items():
        after = on_server(proxy.upstream, kind, patient=patient_id)
        assert [r["id"] for r in after] == [r["id"] for r in before]
    assert outbox_command(app, "retry", "--all-dead") == "no dead letters to retry\n"


def test_retry_refuses_what_is_not_a_dead_letter_and_changes_nothing(make_app, auth, proxy):
    app = outbox_app(make_app, proxy)
    client, worker = app.test_client(), app.extensions[WORKER_KEY]
    issue_cards(client, auth, proxy, f"no{uuid.uuid4().hex[:10]}", 1)
    drain(worker)
    assert "not dead letters: 1 (delivered)" in outbox_command(app, "retry", "--id", "1", ok=False)
    assert "no outbox message 99" in outbox_command(app, "retry", "--id", "99", ok=False)
    assert "--all-dead" in outbox_command(app, "retry", ok=False)
    assert "not both" in outbox_command(app, "retry", "--id", "1", "--all-dead", ok=False)
    assert statuses(app) == {DELIVERED: 1}
    assert outbox_command(app, "list", "--dead") == "no dead messages\n"
    assert "Put dead letters back" in outbox_command(app, "--help")
