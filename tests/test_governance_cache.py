"""Fewer round trips per hook call: a warm call is one transaction of inserts, because the
governance reads come from each worker's cache; a pause or an override still reaches every worker
within a second, on SQLite and on PostgreSQL, and a lost listener means reading through."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
import requests
from flask import Flask
from sqlalchemy import insert, text

from app import DATABASE_KEY
from app.db import create_db_engine, utcnow
from app.governance import cache
from app.governance.cache import GovernanceCache, Watcher, listener_name
from app.governance.lifecycle import ModelChange
from app.governance.model_card import MODEL_CARDS_KEY
from app.observability.exposition import MULTIPROC_ENV
from app.settings import WriteBackServer
from bench.workload import order_sign
from tests.builders import medication_request, moment, order_sign_request
from tests.conftest import BASE_URL, ISSUER
from tests.governance_helpers import change
from tests.round_trips import counted
from tests.smart_helpers import free_port

SERVICE = "/cds-services/medication-safety"
FEEDBACK = SERVICE + "/feedback"
WITHIN = 1.0  # seconds for a change to reach every worker
FHIR = "http://fhir.example/fhir"
APPROVER = {"approver": "Practitioner/cmio-1", "role": "cmio", "reason": "Investigating overrides"}


def seconds_until(condition: Callable[[], bool], timeout: float = 10.0) -> float:
    """From now to the start of the first attempt at which ``condition`` held."""
    started = time.monotonic()
    while True:
        attempt = time.monotonic() - started
        if condition():
            return attempt
        assert attempt < timeout, f"not so within {timeout} s"
        time.sleep(0.01)


def warm(app: Flask, call: Callable[[], object]) -> None:
    """Until the worker's watcher vouches, reads go to the database; then one call fills the cache."""
    call()
    seconds_until(lambda: app.extensions["cds_hooks"].backend.governance.watcher.epoch() is not None)
    call()


def vouched_call(app: Flask, engine, call: Callable[[], object], attempts: int = 5) -> tuple:
    """A call counted while the watcher vouched throughout. On a loaded machine its thread can miss a
    beat; the cache then rightly reads through, and that call says nothing about a warm one."""
    governance = app.extensions["cds_hooks"].backend.governance
    for _ in range(attempts):
        before = governance.watcher.epoch()
        filled = before is not None and before == governance._epoch  # the warm-up's values still hold
        with counted(engine) as trips:
            response = call()
        if filled and governance.watcher.epoch() == before:
            return response, trips
        warm(app, call)
    raise AssertionError(f"the governance watcher did not vouch through any of {attempts} calls")


def metformin_cards(app: Flask, auth: Callable[[str], dict]) -> list[dict]:
    """The cards of an order-sign call for metformin at eGFR 25: one, unless paused or overridden."""
    body = order_sign_request([medication_request("d1")])
    return app.test_client().post(SERVICE, json=body, headers=auth(SERVICE)).get_json()["cards"]


def heard_of_as_from_another_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Changes made here stop reaching this process's caches at once: only the watchers carry them."""
    monkeypatch.setattr(cache.OWN_CHANGES, "add", lambda: None)


def test_a_warm_call_is_one_transaction_of_inserts_with_one_for_all_its_cards(both_databases, make_app, auth):
    app = make_app(
        database_url=both_databases,
        writeback_servers=[WriteBackServer(base_url=FHIR)],
        writeback_default_server=FHIR,
        outbox_in_process=False,
    )
    client, engine = app.test_client(), app.extensions[DATABASE_KEY]

    def call() -> object:
        return client.post(SERVICE, json=order_sign(), headers=auth(SERVICE))

    warm(app, call)
    response, trips = vouched_call(app, engine, call)
    assert len(response.get_json()["cards"]) == 3
    ours = [s for s in trips.statements if "ledger" not in s and "pg_advisory" not in s]
    assert [s.split(" (")[0] for s in ours] == [
        "INSERT INTO seen_token",
        "INSERT INTO card_set",
        "INSERT INTO issued_card",
        "INSERT INTO outbox_message",
    ]
    assert " RETURNING " in ours[1], "the id comes back with the insert"
    assert ours[2].count("), (") == 2, "three cards in one multi-row INSERT"
    assert (trips.checkouts, trips.transactions, trips.compiled) == (1, 1, [])


def test_postgresql_connections_are_pooled_as_configured_and_prepare_the_hook_path(
    postgres_url, make_app, auth
):
    app = make_app(database_url=postgres_url, database_pool_size=3, database_max_overflow=2)
    client, engine = app.test_client(), app.extensions[DATABASE_KEY]
    for _ in range(3):
        client.post(SERVICE, json=order_sign(), headers=auth(SERVICE))
    assert engine.pool.size() == 3
    with engine.connect() as connection:  # the pool is LIFO: the connection the calls used
        prepared = connection.execute(text("SELECT statement FROM pg_prepared_statements")).scalars()
        assert any(statement.startswith("INSERT INTO card_set") for statement in prepared)


def test_an_override_on_one_worker_suppresses_the_rule_on_another_within_a_second(
    both_databases, make_app, auth, monkeypatch
):
    first, second = make_app(database_url=both_databases), make_app(database_url=both_databases)
    (card,) = metformin_cards(first, auth)
    warm(second, lambda: metformin_cards(second, auth))
    heard_of_as_from_another_process(monkeypatch)
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": moment()}
    feedback = first.test_client().post(FEEDBACK, json={"feedback": [item]}, headers=auth(FEEDBACK))
    assert feedback.status_code == 200
    assert seconds_until(lambda: metformin_cards(second, auth) == []) < WITHIN


def test_a_pause_written_by_hand_without_its_signal_still_reaches_the_worker_within_a_second(
    both_databases, make_app, auth
):
    app = make_app(database_url=both_databases)
    warm(app, lambda: metformin_cards(app, auth))
    model = app.extensions[MODEL_CARDS_KEY].card("medication-safety", "1.0.0")
    paused = {"model_id": model.id, "model_version": model.version, "action": "pause"}
    paused |= {"previous_status": "active", "status": "paused", "changed_at": utcnow()} | APPROVER
    with app.extensions[DATABASE_KEY].begin() as connection:
        connection.execute(insert(ModelChange), paused)  # no NOTIFY, no ledger entry
    assert seconds_until(lambda: metformin_cards(app, auth) == []) < WITHIN


class Hung(Watcher):
    """Vouches once, then hangs without a word: a listener whose connection silently died."""

    def _watch(self) -> None:
        self._vouch()
        self._stop.wait()


def test_a_watcher_that_stops_vouching_sends_every_read_to_the_database(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'cache.db'}")
    governance = GovernanceCache(engine, Hung(engine, interval=0.2))
    loads: list[int] = []

    def load(_connection: object) -> int:
        loads.append(len(loads) + 1)
        return loads[-1]

    def read() -> int:
        with governance.reading() as reader:
            return reader("status", load)

    seconds_until(lambda: governance.watcher.epoch() is not None)
    assert [read(), read()] == [1, 1]
    time.sleep(0.45)  # over two intervals since the watcher last vouched
    assert [read(), read()] == [2, 3]
    governance.watcher.stop()


def test_a_dropped_listener_connection_is_replaced_and_no_pause_is_missed_meanwhile(
    postgres_url, make_app, auth, monkeypatch
):
    app = make_app(database_url=postgres_url)
    watcher = app.extensions["cds_hooks"].backend.governance.watcher
    warm(app, lambda: metformin_cards(app, auth))
    heard_of_as_from_another_process(monkeypatch)
    with app.extensions[DATABASE_KEY].begin() as connection:
        dropped = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"
        assert connection.execute(text(dropped), {"name": listener_name()}).scalars().all()
    change(app, "pause")  # its NOTIFY may reach no listener
    assert seconds_until(lambda: metformin_cards(app, auth) == []) < WITHIN
    time.sleep(2 * watcher.interval)  # past what the lost connection vouched for
    assert seconds_until(lambda: watcher.epoch() is not None) < WITHIN, "listening again"


@contextmanager
def workers(database_url: str, client_jwks: dict, scratch: Path, count: int = 2) -> Iterator[list[str]]:
    """``countersign serve`` ``count`` times, one worker each: separate processes, separate caches."""
    env = os.environ | {
        "COUNTERSIGN_DATABASE_URL": database_url,
        "COUNTERSIGN_PUBLIC_BASE_URL": BASE_URL,
        "COUNTERSIGN_TRUSTED_CLIENTS": json.dumps([{"iss": ISSUER, "jwks": client_jwks}]),
        "COUNTERSIGN_LOG_LEVEL": "WARNING",
    }
    with ExitStack() as stack:
        yield [
            stack.enter_context(_serve(env | {MULTIPROC_ENV: str(scratch / str(i))})) for i in range(count)
        ]


@contextmanager
def _serve(env: dict[str, str]) -> Iterator[str]:
    port = free_port()
    command = [sys.executable, "-m", "app.cli", "serve", "--bind", f"127.0.0.1:{port}", "--workers", "1"]
    server = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        seconds_until(lambda: _answers(url + "/healthz"), timeout=60)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=20)


def _answers(url: str) -> bool:
    try:
        return requests.get(url, timeout=1).ok
    except requests.RequestException:
        return False


@pytest.mark.integration
def test_a_pause_and_a_resume_reach_every_worker_process_within_a_second(
    both_databases, make_app, sign, client_jwks, tmp_path
):
    app = make_app(database_url=both_databases)
    body = order_sign_request([medication_request("d1")])

    def cards(url: str) -> list[dict]:
        headers = {"Authorization": f"Bearer {sign(BASE_URL + SERVICE)}"}
        return requests.post(url + SERVICE, json=body, headers=headers, timeout=10).json()["cards"]

    with workers(both_databases, client_jwks, tmp_path) as urls:
        assert all(cards(url) for url in urls), "a first call starts each worker's watcher"
        time.sleep(0.6)
        assert all(cards(url) for url in urls), "and, once it vouches, this one fills the cache"
        change(app, "pause")
        assert max(_took_effect(urls, lambda url: cards(url) == [])) < WITHIN
        change(app, "resume")
        assert max(_took_effect(urls, lambda url: bool(cards(url)))) < WITHIN


def _took_effect(urls: list[str], holds: Callable[[str], bool]) -> list[float]:
    """Per worker, seconds from now to the start of its first call at which ``holds`` held."""
    started, seen = time.monotonic(), {}
    while len(seen) < len(urls) and time.monotonic() - started < 10:
        for url in set(urls) - seen.keys():
            attempt = time.monotonic() - started
            if holds(url):
                seen[url] = attempt
    return [seen.get(url, float("inf")) for url in urls]
