"""An outage is not a dead letter: write-back waits out a FHIR server that is down, without
hammering it, honours ``Retry-After``, gives up only when the retry window ends, and still lands
every record exactly once, in an order the server accepts."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import update
from sqlmodel import Session, select

from app import DATABASE_KEY, WORKER_KEY
from app.audit.outbox import CARD_SET, DEAD, DELIVERED, PENDING, OutboxMessage
from app.db import utcnow
from tests.outbox_helpers import (
    BREAKER_FAILURES,
    OLD_LIMIT_SECONDS,
    PROBE_SECONDS,
    deliver_everything,
    delivery_keys,
    issue_cards,
    on_server,
    outbox_app,
    override_all,
    run_for,
)
from tests.test_metrics import scrape, value
from tests.writeback_helpers import drain, statuses

pytestmark = pytest.mark.integration


@pytest.fixture
def database_url(both_databases: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return both_databases


def test_an_outage_longer_than_the_old_limit_during_200_decisions_loses_and_duplicates_nothing(
    make_app, auth, proxy
):
    app = outbox_app(make_app, proxy)
    client, worker = app.test_client(), app.extensions[WORKER_KEY]
    patient_id = f"out{uuid.uuid4().hex[:10]}"
    cards = issue_cards(client, auth, proxy, patient_id, 100)
    proxy.down(503)
    went_down = time.monotonic()
    cards += issue_cards(client, auth, proxy, patient_id, 100)
    override_all(client, auth, cards)
    worker_started = time.monotonic()
    run_for(worker, 3 * OLD_LIMIT_SECONDS)
    down_for, worked_for = time.monotonic() - went_down, time.monotonic() - worker_started

    assert statuses(app) == {PENDING: 400}
    sent = len(proxy.requests_since(went_down))
    assert sent <= BREAKER_FAILURES + worked_for / PROBE_SECONDS + 1, "a probe per interval, not per message"
    during = scrape(client)
    # open (2), or half-open (1) when the scrape falls on a moment a probe is due; never closed
    assert value(during, "countersign_outbox_breaker_state", target=proxy.base_url) in (1, 2)
    assert value(during, "countersign_outbox_dead_letters", target=proxy.base_url) == 0
    assert value(during, "countersign_outbox_oldest_pending_seconds", target=proxy.base_url) >= down_for

    proxy.up()
    deliver_everything(app)
    assert statuses(app) == {DELIVERED: 400}
    tasks = on_server(proxy.upstream, "Task", patient=patient_id)
    identifiers = sorted(i["value"] for task in tasks for i in task["identifier"])
    assert identifiers == sorted(f"urn:uuid:{card['uuid']}" for card in cards), "each decision once"
    guidance = on_server(proxy.upstream, "GuidanceResponse", subject=f"Patient/{patient_id}")
    audits = on_server(proxy.upstream, "AuditEvent", patient=patient_id)
    assert (len(guidance), len(audits)) == (200, 400)
    keys = delivery_keys([*tasks, *guidance, *audits])
    assert len(keys) == 800 and set(keys.values()) == {1}
    assert value(scrape(client), "countersign_outbox_breaker_state", target=proxy.base_url) == 0


@pytest.mark.parametrize("header", ["seconds", "http-date"])
def test_retry_after_is_honoured_for_the_whole_target(make_app, auth, proxy, header):
    app = outbox_app(make_app, proxy, outbox_breaker_failures=100, outbox_probe_seconds=0.05)
    client, worker = app.test_client(), app.extensions[WORKER_KEY]
    cards = issue_cards(client, auth, proxy, f"ra{uuid.uuid4().hex[:10]}", 3)
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=3.5), usegmt=True)  # whole seconds
    proxy.down(503, "2" if header == "seconds" else later)
    started = time.monotonic()
    worker.run_once()
    run_for(worker, 1.5)
    assert len(proxy.requests_since(started)) == 1, "nothing is sent before Retry-After"
    proxy.up()
    deliver_everything(app)
    first, second, *_ = proxy.requests_since(started)
    assert second.at - first.at >= 1.9
    assert statuses(app) == {DELIVERED: len(cards)}


def test_a_message_still_failing_when_its_window_ends_is_dead_lettered(make_app, auth, proxy):
    window = 2.0  # seconds: the first look, 0.3 s in, keeps 1.7 s of margin on a loaded machine
    app = outbox_app(make_app, proxy, outbox_breaker_failures=1, outbox_retry_window_hours=window / 3600)
    client, worker = app.test_client(), app.extensions[WORKER_KEY]
    issue_cards(client, auth, proxy, f"win{uuid.uuid4().hex[:10]}", 3)
    proxy.down(None)  # no answer at all
    run_for(worker, 0.3)
    assert statuses(app) == {PENDING: 3}
    run_for(worker, window + 1.0)
    assert statuses(app) == {DEAD: 3}
    with Session(app.extensions[DATABASE_KEY]) as session:
        dead = session.exec(select(OutboxMessage)).all()
    assert all(m.first_failed_at is not None and m.last_status is None for m in dead)
    assert {m.last_error["issue"][0]["diagnostics"] for m in dead} == {
        "FHIR server unreachable (ConnectionError)"
    }


def test_a_decision_that_lands_before_its_card_set_refers_to_the_same_request_group(make_app, auth, proxy):
    """Order per patient: a decision's Bundle re-asserts its card set's RequestGroup (conditional
    create on the same delivery tag), so it may land first and the card set still joins it."""
    app = outbox_app(make_app, proxy)
    client, worker = app.test_client(), app.extensions[WORKER_KEY]
    patient_id = f"ord{uuid.uuid4().hex[:10]}"
    override_all(client, auth, issue_cards(client, auth, proxy, patient_id, 1))
    engine = app.extensions[DATABASE_KEY]
    card_set = update(OutboxMessage).where(OutboxMessage.kind == CARD_SET)
    with engine.begin() as connection:
        connection.execute(card_set.values(available_at=utcnow() + timedelta(hours=1)))
    drain(worker)
    [group] = on_server(proxy.upstream, "RequestGroup", subject=f"Patient/{patient_id}")
    [task] = on_server(proxy.upstream, "Task", patient=patient_id)
    assert task["focus"]["reference"] == f"RequestGroup/{group['id']}"
    assert on_server(proxy.upstream, "GuidanceResponse", subject=f"Patient/{patient_id}") == []

    with engine.begin() as connection:
        connection.execute(card_set.values(available_at=utcnow()))
    drain(worker)
    assert statuses(app) == {DELIVERED: 2}
    assert [g["id"] for g in on_server(proxy.upstream, "RequestGroup", subject=f"Patient/{patient_id}")] == [
        group["id"]
    ]
    [provenance] = [
        p
        for p in on_server(proxy.upstream, "Provenance", entity=f"Patient/{patient_id}")
        if p["activity"]["coding"][0]["code"] == "CREATE"
    ]
    assert {"reference": f"RequestGroup/{group['id']}"} in provenance["target"]
