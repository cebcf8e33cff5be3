"""The schema on both supported databases: SQLite (default) and PostgreSQL (scale path)."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import OperationalError

from app.db import create_db_engine
from app.migrate import is_current, upgrade
from tests.builders import medication_request, order_sign_request

POSTGRES_URL = os.environ.get(
    "COUNTERSIGN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
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


@pytest.fixture
def postgres_url() -> str:
    engine = create_engine(POSTGRES_URL)
    try:
        with engine.begin() as connection:
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
    except OperationalError:
        pytest.skip(f"no PostgreSQL at {POSTGRES_URL}")
    finally:
        engine.dispose()
    return POSTGRES_URL


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
