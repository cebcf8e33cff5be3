"""The benchmark's own tools: the growth preload leaves a ledger the application verifies and keeps
writing to, the durable baseline records each call, and memory and database work are read as the
reports say."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys

from sqlalchemy import create_engine, select

from app import DATABASE_KEY
from app.audit.ledger import seal_now, verify_from_checkpoint
from app.audit.tables import CardSet
from app.db import create_db_engine
from bench import startup
from bench.bare_app import CALLS, DURABLE_URL, create_calls_table, create_durable_app
from bench.counting import database_work
from bench.growth import BATCH_SIZE, preload
from bench.servers import Server
from bench.workload import order_sign
from tests.conftest import LEDGER_KEY

SERVICE = "/cds-services/medication-safety"


def test_a_preloaded_store_verifies_intact_and_goes_on_serving(both_databases, make_app, auth):
    app = make_app(database_url=both_databases)
    client, engine = app.test_client(), app.extensions[DATABASE_KEY]
    assert client.post(SERVICE, json=order_sign(), headers=auth(SERVICE)).status_code == 200
    seal_now(engine)
    preloaded = 2 * BATCH_SIZE + 500  # three seals, the last one short
    preload(both_databases, LEDGER_KEY, preloaded)
    assert client.post(SERVICE, json=order_sign(), headers=auth(SERVICE)).status_code == 200
    seal_now(engine)
    result = verify_from_checkpoint(engine, full=True)
    assert result.intact, f"{result.broken_at}: {result.reason}"
    assert (result.entries, result.position) == (preloaded + 2, preloaded + 2)
    with engine.connect() as connection:
        ids = connection.execute(select(CardSet.id).order_by(CardSet.id)).scalars().all()
    assert ids == list(range(1, preloaded + 3)), "the app's next card set follows the preloaded ones"


def test_the_durable_baseline_records_the_hash_of_each_body_before_it_answers(both_databases, monkeypatch):
    create_calls_table(both_databases)
    monkeypatch.setenv(DURABLE_URL, both_databases)
    client = create_durable_app().test_client()
    for body in (b"first", b"second"):
        assert client.post(SERVICE, data=body).status_code == 200
    engine = create_engine(both_databases)
    with engine.connect() as connection:
        recorded = connection.execute(select(CALLS.c.body_sha256).order_by(CALLS.c.id)).scalars().all()
    engine.dispose()
    assert recorded == [hashlib.sha256(b"first").hexdigest(), hashlib.sha256(b"second").hexdigest()]


def test_database_work_counts_the_statements_and_the_transaction_around_them(tmp_path):
    engine = create_db_engine(f"sqlite:///{tmp_path / 'work.db'}")
    with engine.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE t (x INTEGER)")
    with database_work(engine) as work, engine.begin() as connection:
        connection.exec_driver_sql("INSERT INTO t VALUES (1)")
        connection.exec_driver_sql("SELECT x FROM t")
    assert (work.statements, work.transactions, work.commits, work.checkouts) == (2, 1, 1, 1)
    assert work.round_trips == 5, "two statements, BEGIN, COMMIT and the checkout's ping"
    assert work.per(2).statements == 1


def test_a_server_reads_the_resident_memory_of_each_of_its_workers():
    child = subprocess.Popen(
        [sys.executable, "-c", "import time; print('up', flush=True); time.sleep(30)"], stdout=subprocess.PIPE
    )
    try:
        child.stdout.readline()  # the interpreter is up: its memory is its own, not the fork's
        resident = Server("http://127.0.0.1:1", os.getpid()).worker_rss_kib()
    finally:
        child.kill()
        child.communicate()
    assert resident and all(kib > 1024 for kib in resident)


def test_a_cold_start_is_timed_to_ready_and_each_process_memory_read(tmp_path):
    start = startup.cold_start(startup.environment(tmp_path), workers=2)
    assert 0 < start.seconds < 30
    assert [process.role for process in start.memory] == ["master", "worker 1", "worker 2"]
    for process in start.memory:
        rss, pss = process.mib("Rss"), process.mib("Pss")
        assert 10 < pss <= rss, "a page shared with the other processes counts in part"
        assert process.mib("Private_Clean", "Private_Dirty", "Shared_Clean", "Shared_Dirty") == rss


def test_a_killed_worker_is_replaced_and_its_replacement_answers(tmp_path):
    assert 0 < startup.respawn(startup.environment(tmp_path)) < 30
