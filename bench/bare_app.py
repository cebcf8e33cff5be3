"""The baselines, served like Countersign: a bare Flask endpoint that returns one fixed card, and the
same endpoint that first records the call durably (one insert of the body's SHA-256, committed).

The durable baseline is the floor of "record every call before answering" on a store: one
statement and one commit per call, nothing else. ``BENCH_DURABLE_URL`` names its database; on
SQLite it gets Countersign's own engine (WAL, ``synchronous`` and the writer lock as configured in
``app.db``), on PostgreSQL a pool of psycopg connections in autocommit (the insert is the whole
transaction: one round trip).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Callable

import psycopg
from flask import Flask, jsonify, request
from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, create_engine
from sqlalchemy.pool import QueuePool

from app.db import create_db_engine, prepare_sqlite_file
from app.wsgi_server import DEFAULT_THREADS
from bench.stores import libpq_url

DURABLE_URL = "BENCH_DURABLE_URL"
FIXED_CARD = {
    "uuid": str(uuid.uuid4()),
    "summary": "Fixed card",
    "indicator": "info",
    "source": {"label": "Baseline"},
}
METADATA = MetaData()
CALLS = Table(
    "bench_call",
    METADATA,
    Column("id", Integer, primary_key=True),
    Column("body_sha256", String(64), nullable=False),
)

Recorder = Callable[[str], None]


def create_bare_app(record: Recorder | None = None) -> Flask:
    """``record``, when given, receives the body's hex SHA-256 before the response is built."""
    app = Flask(__name__)

    @app.post("/cds-services/<service_id>")
    def call(service_id: str):
        body = request.get_data()
        if record is not None:
            record(hashlib.sha256(body).hexdigest())
        return jsonify({"cards": [FIXED_CARD]})

    return app


def create_durable_app() -> Flask:
    return create_bare_app(recorder(os.environ[DURABLE_URL]))


def create_calls_table(url: str) -> None:
    """Run once before the workers start, so that they do not race to create it."""
    prepare_sqlite_file(url)  # as the app makes its SQLite file: readable by its owner only
    engine = create_engine(url)
    METADATA.create_all(engine)
    engine.dispose()


def recorder(url: str) -> Recorder:
    if url.startswith("sqlite"):
        return _recorder(create_db_engine(url), "INSERT INTO bench_call (body_sha256) VALUES (?)")
    pool = QueuePool(lambda: psycopg.connect(libpq_url(url), autocommit=True), pool_size=DEFAULT_THREADS)
    return _recorder(pool, "INSERT INTO bench_call (body_sha256) VALUES (%s)")


def _recorder(source: Engine | QueuePool, statement: str) -> Recorder:
    """One insert and one commit on a pooled DB-API connection (``commit`` is a no-op in autocommit)."""
    connect = source.raw_connection if isinstance(source, Engine) else source.connect

    def record(digest: str) -> None:
        connection = connect()
        try:
            connection.cursor().execute(statement, (digest,))
            connection.commit()
        finally:
            connection.close()

    return record
