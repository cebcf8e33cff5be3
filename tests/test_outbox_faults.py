"""Fault tests of write-back: nothing lost, nothing duplicated, poison messages set aside."""

from __future__ import annotations

import threading
import time

import pytest
import requests
from sqlalchemy import text, update
from sqlmodel import Session, select

from app import DATABASE_KEY, WORKER_KEY
from app.audit.outbox import DEAD, DELIVERED, PENDING, OutboxMessage
from app.audit.tables import CardSet
from bench.servers import free_port
from sandbox.fhir_test_server import FhirTestServer
from tests.builders import full_prefetch, medication_request, moment, order_sign_request, patient
from tests.killed_worker import kill_a_worker_mid_run
from tests.writeback_helpers import FEEDBACK, SERVICE, drain, put, statuses, writeback_settings

pytestmark = pytest.mark.integration


@pytest.fixture
def database_url(both_databases: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return both_databases


def total(fhir_base: str, resource_type: str, **params: str) -> int:
    return requests.get(f"{fhir_base}/{resource_type}", params=params | {"_count": "1"}, timeout=30).json()[
        "total"
    ]


def hook_calls(client, auth, fhir_base: str, patient_id: str, count: int) -> list[dict]:
    cards = []
    for index in range(count):
        draft = medication_request(f"d{index}-{patient_id}", patient_id=patient_id)
        body = order_sign_request(
            [draft], full_prefetch(patient_id=patient_id), patient_id=patient_id, fhirServer=fhir_base
        )
        cards += client.post(SERVICE, json=body, headers=auth(SERVICE)).get_json()["cards"]
    return cards


def accept_all(client, auth, cards: list[dict]) -> None:
    items = [
        {
            "card": c["uuid"],
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": c["suggestions"][0]["uuid"]}],
            "outcomeTimestamp": moment(),
        }
        for c in cards
    ]
    for start in range(0, len(items), 100):
        response = client.post(
            FEEDBACK, json={"feedback": items[start : start + 100]}, headers=auth(FEEDBACK)
        )
        assert response.status_code == 200


def test_a_resource_the_server_rejects_is_dead_lettered_and_the_rest_arrive(make_app, auth, fhir_server):
    app = make_app(**writeback_settings(fhir_server))
    patient_id = f"dl{time.time_ns()}"
    put(fhir_server, patient(patient_id))
    hook_calls(app.test_client(), auth, fhir_server, patient_id, 3)
    with app.extensions[DATABASE_KEY].begin() as connection:
        connection.execute(update(CardSet).where(CardSet.id == 2).values(input_refs=["   "]))
    drain(app.extensions[WORKER_KEY])
    assert statuses(app) == {DELIVERED: 2, DEAD: 1}
    with Session(app.extensions[DATABASE_KEY]) as session:
        dead = session.exec(select(OutboxMessage).where(OutboxMessage.status == DEAD)).one()
    assert dead.record_id == 2
    [refused] = dead.last_error["issue"]  # only the AI-Provenance carries the broken reference
    assert refused["expression"][0].startswith("Provenance.entity")
    # the rest of the refused record still arrived: its GuidanceResponse, RequestGroup and AuditEvent
    assert total(fhir_server, "GuidanceResponse", subject=f"Patient/{patient_id}") == 3
    assert total(fhir_server, "AuditEvent", patient=patient_id) == 3
    assert total(fhir_server, "Provenance", entity=f"Patient/{patient_id}") == 2


def test_a_record_that_cannot_be_built_is_dead_lettered_not_retried_forever(make_app, auth, fhir_server):
    app = make_app(**writeback_settings(fhir_server))
    patient_id = f"nb{time.time_ns()}"
    put(fhir_server, patient(patient_id))
    hook_calls(app.test_client(), auth, fhir_server, patient_id, 2)
    with app.extensions[DATABASE_KEY].begin() as connection:
        connection.execute(text('UPDATE issued_card SET card = \'{"uuid": "x"}\' WHERE card_set_id = 1'))
    drain(app.extensions[WORKER_KEY])
    assert statuses(app) == {DELIVERED: 1, DEAD: 1}


def test_fhir_server_down_during_500_decisions_then_everything_arrives_once(make_app, auth):
    port = free_port()
    server = FhirTestServer(port=port)
    base = server.start()
    app = make_app(
        **writeback_settings(base, outbox_base_delay_seconds=0.01),
        rate_limit_per_minute=0,  # one client sends 500 calls as fast as it can: a load test, not abuse
    )
    client = app.test_client()
    patient_id = f"down{time.time_ns()}"
    put(base, patient(patient_id))
    cards = hook_calls(client, auth, base, patient_id, 250)
    server.stop()
    accept_all(client, auth, cards)
    cards += hook_calls(client, auth, base, patient_id, 250)
    accept_all(client, auth, cards[250:])
    worker = app.extensions[WORKER_KEY]
    for _ in range(3):
        worker.run_once()
    assert statuses(app).get(DELIVERED, 0) == 0
    restarted = FhirTestServer(port=port)
    restarted.start()
    put(base, patient(patient_id))  # the restarted server is empty; the EHR's chart comes back first
    try:
        deadline = time.monotonic() + 300
        while statuses(app).get(PENDING) and time.monotonic() < deadline:
            if not worker.run_once():
                time.sleep(0.05)
        assert statuses(app) == {DELIVERED: 1000}
        assert total(base, "GuidanceResponse", subject=f"Patient/{patient_id}") == 500
        assert total(base, "Provenance", entity=f"Patient/{patient_id}") == 1000
        assert total(base, "AuditEvent", patient=patient_id) == 1000
    finally:
        restarted.stop()


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(make_app, make_settings, auth, fhir_server):
    overrides = writeback_settings(fhir_server, outbox_lease_seconds=2, outbox_batch_size=50)
    app = make_app(**overrides)
    patient_id = f"kill{time.time_ns()}"
    put(fhir_server, patient(patient_id))
    hook_calls(app.test_client(), auth, fhir_server, patient_id, 200)
    killed_at = kill_a_worker_mid_run(app, make_settings(**overrides), kill_after=20)
    assert 0 < killed_at < 200
    assert statuses(app) == {DELIVERED: 200}
    assert total(fhir_server, "GuidanceResponse", subject=f"Patient/{patient_id}") == 200
    assert total(fhir_server, "AuditEvent", patient=patient_id) == 200


class CountingDeliverer:
    """Records every message a worker builds for delivery, to prove none is handed to two workers."""

    lock = threading.Lock()

    def __init__(self, inner, log: list[int]) -> None:
        self.inner, self.log = inner, log

    def build(self, kind: str, record_id: int, writer):
        with self.lock:
            self.log.append(record_id)
        return self.inner.build(kind, record_id, writer)

    def resolve_references(self, writer, bundles) -> None:
        self.inner.resolve_references(writer, bundles)


def test_two_workers_never_hold_one_message_at_once(make_app, auth, fhir_server):
    app = make_app(**writeback_settings(fhir_server))
    patient_id = f"pg{time.time_ns()}"
    put(fhir_server, patient(patient_id))
    hook_calls(app.test_client(), auth, fhir_server, patient_id, 120)
    workers = [make_app(**writeback_settings(fhir_server)).extensions[WORKER_KEY] for _ in range(2)]
    delivered: list[int] = []
    for worker in workers:
        worker.deliverer = CountingDeliverer(worker.deliverer, delivered)
    threads = [threading.Thread(target=drain, args=(worker, 100)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(delivered) == list(range(1, 121))
    assert statuses(app) == {DELIVERED: 120}
    assert total(fhir_server, "GuidanceResponse", subject=f"Patient/{patient_id}") == 120
