"""Shared steps of the outage and recovery tests: records written back through a ``FhirProxy``.

The retry policy keeps its logic but runs on a scaled clock: a 10 ms first delay instead of 1 s,
a 0.2 s backoff cap instead of 5 min, a probe every 0.2 s instead of 30 s.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

import requests

from app import WORKER_KEY
from app.audit.outbox import PENDING
from fhir_profiles.common import DELIVERY_TAG_SYSTEM
from tests.builders import full_prefetch, medication_request, order_sign_request, patient
from tests.fhir_proxy import FhirProxy
from tests.writeback_helpers import FEEDBACK, SERVICE, override_item, put, statuses, writeback_settings

SCALE = 0.01  # 1 s of the production policy is 10 ms here
PROBE_SECONDS = 0.2
BREAKER_FAILURES = 3
#: The old policy's limit: 8 tries, 1 s doubling (4¼ min in production), on the scaled clock.
OLD_LIMIT_SECONDS = sum(SCALE * 2**attempt for attempt in range(7))
PRIVATE_COMMENT = "Discussed with Mrs Ellison at home"


def outbox_app(make_app, proxy: FhirProxy, **overrides: object):
    settings = {
        "outbox_base_delay_seconds": SCALE,
        "outbox_probe_seconds": PROBE_SECONDS,
        "outbox_breaker_failures": BREAKER_FAILURES,
        "rate_limit_per_minute": 0,  # one test client sends hundreds of calls at once
    }
    app = make_app(**writeback_settings(proxy.base_url, **(settings | overrides)))
    worker = app.extensions[WORKER_KEY]
    worker.policy = replace(worker.policy, max_delay=300 * SCALE)
    return app


def issue_cards(client, auth, proxy: FhirProxy, patient_id: str, count: int) -> list[dict]:
    """``count`` order-sign calls for one patient (on the FHIR server), one card each."""
    put(proxy.upstream, patient(patient_id))
    cards = []
    for index in range(count):
        draft = medication_request(f"d{index}-{patient_id}", patient_id=patient_id)
        body = order_sign_request(
            [draft], full_prefetch(patient_id=patient_id), patient_id=patient_id, fhirServer=proxy.base_url
        )
        response = client.post(SERVICE, json=body, headers=auth(SERVICE))
        assert response.status_code == 200, response.get_data(as_text=True)
        cards += response.get_json()["cards"]
    assert len(cards) == count
    return cards


def override_all(client, auth, cards: list[dict], comment: str = PRIVATE_COMMENT) -> None:
    """The clinician overrides every card, with a reason and a free-text comment."""
    items = [override_item(card, comment) for card in cards]
    for start in range(0, len(items), 100):
        feedback = {"feedback": items[start : start + 100]}
        assert client.post(FEEDBACK, json=feedback, headers=auth(FEEDBACK)).status_code == 200


def run_for(worker, seconds: float) -> None:
    """What ``countersign worker`` does for ``seconds``, with a short idle wait."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not worker.run_once():
            time.sleep(0.01)


def deliver_everything(app, timeout: float = 120) -> None:
    worker, deadline = app.extensions[WORKER_KEY], time.monotonic() + timeout
    while statuses(app).get(PENDING) and time.monotonic() < deadline:
        if not worker.run_once():
            time.sleep(0.01)


def on_server(fhir_base: str, resource_type: str, **params: str) -> list[dict]:
    bundle = requests.get(
        f"{fhir_base}/{resource_type}", params=params | {"_count": "1000"}, timeout=30
    ).json()
    return [entry["resource"] for entry in bundle.get("entry", [])]


def delivery_keys(resources: list[dict]) -> Counter:
    """How often each delivery tag occurs: every resource Countersign writes carries a unique one."""
    return Counter(
        tag["code"]
        for resource in resources
        for tag in resource.get("meta", {}).get("tag", [])
        if tag.get("system") == DELIVERY_TAG_SYSTEM
    )
