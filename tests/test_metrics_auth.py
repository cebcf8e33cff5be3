"""``/metrics`` answers only the scraper holding COUNTERSIGN_METRICS_TOKEN; without one it is off."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from tests.conftest import METRICS_AUTH, METRICS_TOKEN

CHALLENGE = 'Bearer realm="countersign-metrics"'


def test_an_anonymous_scrape_gets_401_with_a_bearer_challenge(client):
    response = client.get("/metrics")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert "countersign_" not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {METRICS_TOKEN}x", f"Bearer {METRICS_TOKEN[:-1]}", f"Basic {METRICS_TOKEN}", "Bearer "],
)
def test_a_wrong_token_or_scheme_gets_401(client, authorization):
    response = client.get("/metrics", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == f'{CHALLENGE}, error="invalid_token"'


def test_the_configured_token_gets_the_metrics(client):
    response = client.get("/metrics", headers=METRICS_AUTH)
    assert response.status_code == 200
    assert "countersign_http_requests_total" in response.get_data(as_text=True)


def test_without_a_token_configured_metrics_are_off(make_app):
    client = make_app(metrics_token="").test_client()
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", headers=METRICS_AUTH).status_code == 404


def test_a_short_token_stops_the_start_without_echoing_it(make_settings):
    with pytest.raises(ValidationError, match="COUNTERSIGN_METRICS_TOKEN") as refused:
        make_settings(metrics_token="short-token")
    assert "short-token" not in str(refused.value)
