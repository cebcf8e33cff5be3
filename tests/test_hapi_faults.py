"""Write-back faults against the real HAPI FHIR server: HAPI lost mid-request and then down for a
minute while clinicians keep deciding, and a worker process killed mid-run. Neither loses nor
duplicates a record on HAPI, and neither makes a dead letter: a write that landed but whose answer
was lost is sent again and matched by HAPI's conditional create (200, nothing written). Two workers
sending a card set and the decision on it at the same moment make no dead letter either: HAPI's 409
for the losing conditional create is retried, and then matches."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from app import WORKER_KEY
from app.audit.outbox import DELIVERED, PENDING
from tests.builders import patient
from tests.fhir_proxy import FhirProxy
from tests.hapi_helpers import count, search_all
from tests.killed_worker import kill_a_worker_mid_run
from tests.outbox_helpers import (
    BREAKER_FAILURES,
    SCALE,
    delivery_keys,
    issue_cards,
    outbox_app,
    override_all,
)
from tests.test_outbox_faults import hook_calls
from tests.writeback_helpers import put, statuses, writeback_settings

pytestmark = pytest.mark.hapi
#: A minute of the retry policy's clock (scaled, see tests/outbox_helpers.py): the outage lasts that
#: long at least, and as long as the clinician's decisions take.
OUTAGE_SECONDS = 60 * SCALE
CARDS = 10


@pytest.fixture
def proxy(hapi_server: str) -> Iterator[FhirProxy]:
    with FhirProxy(hapi_server) as running:
        yield running


def on_hapi(hapi_server: str, patient_id: str) -> dict[str, list[dict]]:
    """Everything Countersign wrote about the patient, by type."""
    return {
        "Provenance": search_all(hapi_server, "Provenance", entity=f"Patient/{patient_id}"),
        "AuditEvent": search_all(hapi_server, "AuditEvent", patient=patient_id),
        "GuidanceResponse": search_all(hapi_server, "GuidanceResponse", subject=f"Patient/{patient_id}"),
        "Task": search_all(hapi_server, "Task", patient=patient_id),
    }


def wait_for(condition: Callable[[], object], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_hapi_lost_mid_request_then_down_for_a_minute_during_decisions_lands_everything_once(
    make_app, auth, proxy, hapi_server
):
    app = outbox_app(make_app, proxy)
    client = app.test_client()
    patient_id = f"hd{uuid.uuid4().hex[:10]}"
    stop = threading.Event()
    worker = threading.Thread(target=app.extensions[WORKER_KEY].run_forever, args=(stop, 0.01))
    proxy.lose_answers()  # HAPI goes down mid-request: what was sent lands, the answers never come
    went_down = time.monotonic()
    worker.start()
    try:
        cards = issue_cards(client, auth, proxy, patient_id, CARDS)
        wait_for(lambda: any(seen.method == "POST" for seen in proxy.requests_since(went_down)))
        proxy.down(None)  # ... and then takes no request at all, while the clinician decides
        landed_unacknowledged = count(hapi_server, "GuidanceResponse", subject=f"Patient/{patient_id}")
        acknowledged = statuses(app).get(DELIVERED, 0)
        cards += issue_cards(client, auth, proxy, patient_id, CARDS)
        override_all(client, auth, cards)
        time.sleep(max(0.0, went_down + OUTAGE_SECONDS - time.monotonic()))
        during = statuses(app)
        attempts = len(proxy.requests_since(went_down))
        proxy.up()
        wait_for(lambda: not statuses(app).get(PENDING), timeout=120)
    finally:
        stop.set()
        worker.join()

    assert landed_unacknowledged > 0 and acknowledged == 0
    assert during == {PENDING: 4 * CARDS}  # no dead letter, nothing lost, nothing marked delivered
    assert attempts >= BREAKER_FAILURES  # the worker kept trying through the outage
    assert statuses(app) == {DELIVERED: 4 * CARDS}
    held = on_hapi(hapi_server, patient_id)
    assert {kind: len(resources) for kind, resources in held.items()} == {
        "Provenance": 4 * CARDS,  # each card's AI output and each override
        "AuditEvent": 4 * CARDS,
        "GuidanceResponse": 2 * CARDS,
        "Task": 2 * CARDS,
    }
    keys = delivery_keys([resource for resources in held.values() for resource in resources])
    assert len(keys) == 12 * CARDS and set(keys.values()) == {1}
    identifiers = [i["value"] for task in held["Task"] for i in task["identifier"]]
    assert len(identifiers) == len(set(identifiers)) == 2 * CARDS


def test_a_worker_process_killed_mid_run_loses_and_duplicates_nothing_on_hapi(
    make_app, make_settings, auth, hapi_server, postgres_url
):
    overrides = writeback_settings(
        hapi_server, outbox_lease_seconds=2, outbox_batch_size=10, database_url=postgres_url
    )
    app = make_app(**overrides)
    patient_id = f"hk{uuid.uuid4().hex[:10]}"
    put(hapi_server, patient(patient_id))
    hook_calls(app.test_client(), auth, hapi_server, patient_id, 6 * CARDS)

    killed_at = kill_a_worker_mid_run(app, make_settings(**overrides), kill_after=CARDS)

    assert 0 < killed_at < 6 * CARDS
    assert statuses(app) == {DELIVERED: 6 * CARDS}
    held = on_hapi(hapi_server, patient_id)
    assert [len(held[kind]) for kind in ("GuidanceResponse", "Provenance", "AuditEvent")] == [6 * CARDS] * 3
    keys = delivery_keys(held["GuidanceResponse"] + held["Provenance"] + held["AuditEvent"])
    assert len(keys) == 18 * CARDS and set(keys.values()) == {1}


def test_two_workers_delivering_cards_and_their_decisions_at_once_make_no_dead_letter(
    make_app, auth, hapi_server, postgres_url
):
    """The scale path: two ``countersign worker``s share the outbox; each claims one message at a
    time, so a card set and the decision on it (both create the card's RequestGroup, conditionally)
    are often sent at the same moment."""
    settings = writeback_settings(hapi_server, outbox_batch_size=1, database_url=postgres_url)
    app = make_app(**settings, rate_limit_per_minute=0)
    client = app.test_client()
    for _ in range(3 * CARDS):  # a patient each: an overridden card quiets the next one
        patient_id = f"hw{uuid.uuid4().hex[:10]}"
        put(hapi_server, patient(patient_id))
        override_all(client, auth, hook_calls(client, auth, hapi_server, patient_id, 1))
    workers = [app.extensions[WORKER_KEY], make_app(**settings).extensions[WORKER_KEY]]
    stop = threading.Event()
    threads = [threading.Thread(target=worker.run_forever, args=(stop, 0.01)) for worker in workers]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: not statuses(app).get(PENDING), timeout=120)
    finally:
        stop.set()
        for thread in threads:
            thread.join()

    assert statuses(app) == {DELIVERED: 6 * CARDS}
