"""``/metrics`` moves when each path is driven: hook calls, suppressions, feedback, JWT rejections,
rate limits, outbox depth, lag and dead letters; and it sums every gunicorn worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from app import WORKER_KEY
from app.observability.exposition import MULTIPROC_ENV
from app.observability.metrics import record_circuit_state, record_llm_call
from app.settings import WriteBackServer
from bench.servers import free_port
from tests.builders import full_prefetch, medication_request, moment, order_sign_request, patient
from tests.conftest import METRICS_AUTH
from tests.governance_helpers import change
from tests.test_feedback import FEEDBACK, SERVICE, overridden

Sample = tuple[str, frozenset]


def scrape(client) -> dict[Sample, float]:
    response = client.get("/metrics", headers=METRICS_AUTH)
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return parse(response.get_data(as_text=True))


def parse(text: str) -> dict[Sample, float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: dict[Sample, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def delta(before: dict, after: dict, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def call(client, auth, body: dict):
    response = client.post(SERVICE, json=body, headers=auth(SERVICE))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["cards"]


HOOK = {"service": "medication-safety", "hook": "order-sign"}


def test_an_issued_card_moves_requests_latency_cards_dispositions_and_engine_time(client, auth):
    before = scrape(client)
    cards = call(client, auth, order_sign_request([medication_request("d1")]))
    after = scrape(client)
    assert cards and cards[0]["indicator"] == "critical"
    route = {"route": "/cds-services/<service_id>", "method": "POST"} | HOOK
    assert delta(before, after, "countersign_http_requests_total", status="200", **route) == 1
    assert delta(before, after, "countersign_http_request_duration_seconds_count", **route) == 1
    assert delta(before, after, "countersign_cards_total", indicator="critical", **HOOK) == len(cards)
    assert delta(before, after, "countersign_hook_dispositions_total", disposition="issued", **HOOK) == 1
    engine = {"service": "medication-safety"}
    assert delta(before, after, "countersign_engine_duration_seconds_count", **engine) == 1


def test_suppressions_by_reason_paused_applicability_and_alert_fatigue(app, client, auth):
    before = scrape(client)
    change(app, "pause")
    assert call(client, auth, order_sign_request([medication_request("d1")])) == []
    change(app, "resume")
    child = full_prefetch(egfr_value=25) | {"patient": patient() | {"birthDate": "2020-01-01"}}
    assert call(client, auth, order_sign_request([medication_request("d3")], child)) == []
    card = call(client, auth, order_sign_request([medication_request("d4")]))[0]
    reason = {"system": card["overrideReasons"][0]["system"], "code": "patient-ineligible"}
    feedback = client.post(
        FEEDBACK, json={"feedback": [overridden(card, reason=reason)]}, headers=auth(FEEDBACK)
    )
    assert feedback.status_code == 200
    assert call(client, auth, order_sign_request([medication_request("d5")])) == []
    after = scrape(client)
    for reason_label in ("paused", "applicability", "alert-fatigue"):
        moved = delta(before, after, "countersign_suppressions_total", reason=reason_label, **HOOK)
        assert moved >= 1, reason_label
    for disposition in ("paused", "not-applicable"):
        moved = delta(before, after, "countersign_hook_dispositions_total", disposition=disposition, **HOOK)
        assert moved == 1, disposition
    outcome = {"outcome": "overridden", "override_reason": "patient-ineligible"}
    assert delta(before, after, "countersign_feedback_total", service="medication-safety", **outcome) == 1


def test_feedback_counts_accepts_and_comment_only_overrides(client, auth):
    cards = call(client, auth, order_sign_request([medication_request("d1")]))
    before = scrape(client)
    card = cards[0]
    items = [
        {
            "card": card["uuid"],
            "outcome": "accepted",
            "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
            "outcomeTimestamp": moment(),
        },
        overridden(card, userComment="renal function improving"),
    ]
    assert client.post(FEEDBACK, json={"feedback": items}, headers=auth(FEEDBACK)).status_code == 200
    after = scrape(client)
    service = {"service": "medication-safety"}
    accepted = {"outcome": "accepted", "override_reason": "none"} | service
    comment = {"outcome": "overridden", "override_reason": "comment-only"} | service
    assert delta(before, after, "countersign_feedback_total", **accepted) == 1
    assert delta(before, after, "countersign_feedback_total", **comment) == 1


def test_jwt_rejections_are_counted_by_cause(client, sign):
    before = scrape(client)
    client.get("/cds-services")
    client.get("/cds-services", headers={"Authorization": f"Bearer {sign('http://elsewhere/cds-services')}"})
    after = scrape(client)
    assert delta(before, after, "countersign_jwt_rejections_total", cause="missing-bearer") == 1
    assert delta(before, after, "countersign_jwt_rejections_total", cause="wrong-aud") == 1
    route = {"route": "/cds-services", "method": "GET", "status": "401", "service": "", "hook": ""}
    assert delta(before, after, "countersign_http_requests_total", **route) == 2


def test_rate_limited_calls_are_counted(make_app, auth):
    client = make_app(rate_limit_per_minute=60, rate_limit_burst=1).test_client()
    before = scrape(client)
    statuses = [client.get("/cds-services", headers=auth("/cds-services")).status_code for _ in range(3)]
    after = scrape(client)
    assert statuses == [200, 429, 429]
    assert delta(before, after, "countersign_rate_limited_total", route="/cds-services") == 2


def test_outbox_depth_lag_and_dead_letters_come_from_the_database(make_app, auth):
    unreachable = f"http://127.0.0.1:{free_port()}/fhir"
    app = make_app(
        writeback_servers=[WriteBackServer(base_url=unreachable)],
        writeback_default_server=unreachable,
        outbox_in_process=False,
        outbox_retry_window_hours=0,  # the first transient failure already ends the window
    )
    client = app.test_client()
    assert value(scrape(client), "countersign_outbox_messages", status="pending") == 0
    call(client, auth, order_sign_request([medication_request("d1")]))
    time.sleep(0.05)
    queued = scrape(client)
    assert value(queued, "countersign_outbox_messages", status="pending") == 1
    assert value(queued, "countersign_outbox_oldest_pending_seconds", target=unreachable) > 0
    assert app.extensions[WORKER_KEY].run_once() == 1
    settled = scrape(client)
    assert value(settled, "countersign_outbox_messages", status="pending") == 0
    assert value(settled, "countersign_outbox_dead_letters", target=unreachable) == 1
    assert value(settled, "countersign_outbox_oldest_pending_seconds", target=unreachable) == 0
    assert delta(queued, settled, "countersign_outbox_settled_total", outcome="dead") == 1


def test_llm_and_circuit_breaker_recorders_are_exposed(client):
    before = scrape(client)
    record_llm_call("hospital-gateway", 0.8, "ok")
    record_circuit_state("hospital-gateway", "open")
    after = scrape(client)
    labels = {"endpoint": "hospital-gateway", "outcome": "ok"}
    assert delta(before, after, "countersign_llm_request_duration_seconds_count", **labels) == 1
    assert value(after, "countersign_circuit_breaker_state", breaker="hospital-gateway") == 2


@pytest.mark.integration
def test_countersign_serve_sums_the_metrics_of_every_worker(tmp_path, database_url):
    """Under gunicorn each worker counts in its own process; every scrape must show the sum."""
    port, metrics_dir = free_port(), tmp_path / "metrics"
    env = os.environ | {"COUNTERSIGN_DATABASE_URL": database_url, MULTIPROC_ENV: str(metrics_dir)}
    subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], env=env, check=True)
    command = [sys.executable, "-m", "app.cli", "serve", "--bind", f"127.0.0.1:{port}", "--workers", "2"]
    server = subprocess.Popen(command, env=env, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for(base + "/healthz")
        with ThreadPoolExecutor(8) as pool:
            statuses = list(pool.map(lambda _: _fresh_get(base + "/readyz").status_code, range(48)))
        scrapes = [parse(_fresh_get(base + "/metrics", METRICS_AUTH).text) for _ in range(6)]
    finally:
        server.terminate()
        server.wait(timeout=20)
    assert statuses == [200] * 48
    assert len(list(metrics_dir.glob("counter_*.db"))) == 2, "both workers served requests"
    labels = {"route": "/readyz", "method": "GET", "status": "200", "service": "", "hook": ""}
    assert [value(s, "countersign_http_requests_total", **labels) for s in scrapes] == [48] * 6


def _fresh_get(url: str, headers: dict | None = None) -> requests.Response:
    """A new connection each time, so the kernel may hand it to either worker."""
    return requests.get(url, headers={"Connection": "close"} | (headers or {}), timeout=10)


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within 30 s")
