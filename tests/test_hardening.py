"""Limits, rate limits, security headers, CORS only on CDS routes, and the health probes."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from app import create_app
from app.web.hardening import json_depth
from bench.servers import free_port
from tests.builders import medication_request, order_sign_request
from tests.conftest import METRICS_AUTH
from tests.test_external_versions import external_card, write_cards

SERVICE = "/cds-services/medication-safety"
EHR = "https://ehr.hospital.example"


def post(client, auth, body: bytes):
    return client.post(SERVICE, data=body, headers={"Content-Type": "application/json", **auth(SERVICE)})


@pytest.mark.parametrize(
    ("document", "depth"),
    [
        (b"", 0),
        (b'"]]]"', 0),
        (b"[]", 1),
        (b'{"a": [[1]], "b": "[[[[[["}', 3),
        (b'{"a": "\\"[[[[", "b": [{}]}', 3),
        (b'{"a": "]]]]]]", "b": [[[[1]]]]}', 5),
    ],
)
def test_json_depth_ignores_brackets_inside_strings(document, depth):
    assert json_depth(document) == depth


def test_deeply_nested_json_is_refused_with_an_outcome(client, auth):
    body = order_sign_request([medication_request("d1")])
    body["extension"] = {"x": json.loads("[" * 70 + "]" * 70)}
    response = post(client, auth, json.dumps(body).encode())
    assert response.status_code == 400
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert "nested deeper than 64" in response.get_json()["issue"][0]["diagnostics"]


def test_a_realistic_call_is_within_the_depth_limit(client, auth):
    body = json.dumps(order_sign_request([medication_request("d1")])).encode()
    assert post(client, auth, body).status_code == 200


def test_an_oversized_body_is_413(make_app, auth):
    client = make_app(max_body_bytes=1024).test_client()
    response = post(client, auth, json.dumps(order_sign_request([medication_request("d1")])).encode())
    assert response.status_code == 413
    assert response.get_json()["resourceType"] == "OperationOutcome"


def test_the_rate_limit_answers_429_with_retry_after_and_cors(make_app, auth):
    client = make_app(rate_limit_per_minute=30, rate_limit_burst=2).test_client()
    responses = [client.get("/cds-services", headers=auth("/cds-services")) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    refused = responses[-1]
    assert refused.headers["Retry-After"] == "2"
    assert refused.get_json()["issue"][0]["code"] == "throttled"
    assert refused.headers["Access-Control-Allow-Origin"] == "*"
    assert client.get("/api/models").status_code == 200, "only the CDS endpoints are limited"


def test_the_rate_limit_is_per_client_address(make_app, auth):
    client = make_app(rate_limit_per_minute=30, rate_limit_burst=1, trusted_proxies=1).test_client()

    def from_client(address: str) -> int:
        headers = auth("/cds-services") | {"X-Forwarded-For": address}
        return client.get("/cds-services", headers=headers).status_code

    assert [from_client("10.0.0.1"), from_client("10.0.0.1"), from_client("10.0.0.2")] == [200, 429, 200]


def test_app_pages_get_a_strict_csp_framable_only_by_configured_ehrs(make_app):
    client = make_app(frame_ancestors=[EHR]).test_client()
    response = client.get("/app/launch")
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy
    assert policy.endswith(f"frame-ancestors 'self' {EHR}")
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("path", ["/api/models", "/metrics", "/healthz", "/openapi.json"])
def test_other_responses_are_never_framed_and_carry_no_cors(client, path):
    response = client.get(path, headers=METRICS_AUTH)
    assert response.status_code == 200
    assert response.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert response.headers["Cache-Control"] == "no-store"
    assert "Access-Control-Allow-Origin" not in response.headers


def test_https_deployments_send_hsts(make_app):
    client = make_app(public_base_url="https://countersign.hospital.example").test_client()
    assert client.get("/healthz").headers["Strict-Transport-Security"].startswith("max-age=")


def test_a_frame_ancestor_that_is_not_an_origin_stops_the_start(make_settings):
    with pytest.raises(ValidationError, match="frame_ancestors"):
        make_settings(frame_ancestors=["https://ehr.example/path; script-src *"])


def test_readyz_is_ready_on_a_migrated_database(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", "registry": "ok", "ledger": "ok"},
        "ledger": {"limit_seconds": 10.0, "unsealed_entries": 0, "oldest_unsealed_seconds": 0.0},
    }


def test_readyz_follows_the_hospitals_card_files_as_they_are_edited(make_app, tmp_path):
    """Parsed again only when a file changed, yet every change counts: broken, mended, removed."""
    cards = write_cards(tmp_path / "cards", external_card("http://127.0.0.1:9"))
    client = make_app(model_cards_dir=cards).test_client()
    card, registry = cards / "readmission-risk-2.0.0.yaml", lambda: client.get("/readyz")
    original = card.read_text()
    assert registry().status_code == 200
    card.write_text(original.replace("deadline_seconds", "deadline"))
    assert (registry().status_code, registry().get_json()["checks"]["registry"]) == (503, "failed")
    card.write_text(original)
    assert registry().status_code == 200
    card.unlink()
    assert registry().get_json()["checks"]["registry"] == "failed"


def test_readyz_is_503_when_migrations_are_missing(make_settings):
    client = create_app(make_settings()).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["migrations"] == "failed"
    assert client.get("/healthz").status_code == 200


def test_readyz_is_503_when_the_database_is_unreachable(make_settings):
    unreachable = f"postgresql+psycopg://nobody:secret@127.0.0.1:{free_port()}/none"
    client = create_app(make_settings(database_url=unreachable)).test_client()
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"] == "failed"
    assert "secret" not in response.get_data(as_text=True)
