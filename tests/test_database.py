"""The schema on both supported databases: SQLite (default) and PostgreSQL (scale path)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import inspect, text

from app.db import create_db_engine
from app.migrate import is_current, upgrade
from tests.builders import medication_request, order_sign_request

TABLES = {"card_set", "issued_card", "card_decision", "seen_token", "ledger_entry", "outbox_message"}
SERVICE = "/cds-services/medication-safety"


def test_sqlite_migrates_to_head_in_wal_mode(tmp_path):
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    engine = create_db_engine(url)
    assert not is_current(engine)
    upgrade(url)
    assert is_current(engine)
    assert set(inspect(engine).get_table_names()) >= TABLES
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_postgres_migrates_and_refuses_a_replay_across_workers(postgres_url, make_app, sign):
    upgrade(postgres_url)
    assert is_current(create_db_engine(postgres_url))
    workers = [make_app(database_url=postgres_url).test_client() for _ in range(4)]
    token = sign("http://localhost" + SERVICE)
    body = order_sign_request([medication_request("d1")])

    def call(client):
        return client.post(SERVICE, json=body, headers={"Authorization": f"Bearer {token}"}).status_code

    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = sorted(pool.map(call, workers))
    assert statuses == [200, 401, 401, 401]
