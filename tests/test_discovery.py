"""Discovery (reference §9.1 D1-D6)."""

from __future__ import annotations

import re

from cds_hooks.discovery import allowed_tokens
from tests.conftest import BASE_URL

TOKEN = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")


def test_discovery_lists_services_with_prefetch_and_usage_requirements(client, auth):
    response = client.get("/cds-services", headers=auth("/cds-services"))
    assert response.status_code == 200
    services = response.get_json()["services"]
    by_hook = {(s["id"], s["hook"]): s for s in services}
    assert ("medication-safety", "order-select") in by_hook
    assert ("medication-safety", "order-sign") in by_hook
    for service in services:
        assert all(isinstance(service[name], str) and service[name] for name in ("hook", "description", "id"))
        assert service["usageRequirements"]
        assert all(isinstance(template, str) and template for template in service["prefetch"].values())


def test_prefetch_templates_use_only_allowed_tokens(client, auth):
    services = client.get("/cds-services", headers=auth("/cds-services")).get_json()["services"]
    for service in services:
        for template in service["prefetch"].values():
            for token in TOKEN.findall(template):
                assert token in allowed_tokens(service["hook"]), (service["id"], token)


def test_id_and_hook_pairs_are_unique(client, auth):
    services = client.get("/cds-services", headers=auth("/cds-services")).get_json()["services"]
    pairs = [(s["id"], s["hook"]) for s in services]
    assert len(pairs) == len(set(pairs))


def test_discovery_without_a_token_is_401_without_detail(client):
    response = client.get("/cds-services")
    assert response.status_code == 401
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["diagnostics"] == "Authentication required"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_post_to_discovery_is_405_with_operation_outcome(client, auth):
    response = client.post("/cds-services", headers=auth("/cds-services"), json={})
    assert response.status_code == 405
    assert response.get_json()["resourceType"] == "OperationOutcome"
    assert "GET" in response.headers["Allow"]


def test_cors_preflight_allows_authorization_and_content_type(client):
    response = client.options(
        "/cds-services/medication-safety",
        headers={"Origin": "https://sandbox.example", "Access-Control-Request-Method": "POST"},
    )
    assert response.status_code == 200
    allowed = response.headers["Access-Control-Allow-Headers"]
    assert "Authorization" in allowed and "Content-Type" in allowed
    assert response.headers["Access-Control-Allow-Origin"] == "*"


def test_discovery_token_must_name_the_discovery_url(client, sign):
    token = sign(BASE_URL + "/cds-services/medication-safety")
    response = client.get("/cds-services", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
