"""Client JWT authentication (reference §9.2 A1-A17)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from joserfc.jwk import ECKey, RSAKey

from app import DATABASE_KEY
from cds_hooks.auth import TrustedClient
from tests.builders import medication_request, order_sign_request
from tests.conftest import BASE_URL, ISSUER, KID

PATH = "/cds-services/medication-safety"
AUD = BASE_URL + PATH


def call(client, token: str | None, body: dict | None = None, headers: dict | None = None):
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return client.post(PATH, json=body or order_sign_request([medication_request("d1")]), headers=headers)


def recorded_counts(app) -> tuple[int, ...]:
    tables = ("card_set", "issued_card", "ledger_entry", "seen_token")
    with app.extensions[DATABASE_KEY].connect() as connection:
        return tuple(connection.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar() for t in tables)


def b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def test_valid_es384_token_is_accepted(client, sign):
    assert call(client, sign(AUD)).status_code == 200


def test_missing_authorization_is_401(client):
    assert call(client, None).status_code == 401


def test_basic_or_non_jwt_bearer_is_401(client):
    assert call(client, None, headers={"Authorization": "Basic dXNlcjpwYXNz"}).status_code == 401
    assert call(client, "not-a-jwt").status_code == 401


def test_alg_none_is_401(client):
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUD, "iat": now, "exp": now + 300, "jti": "n-1"}
    token = f"{b64({'alg': 'none', 'typ': 'JWT', 'kid': KID})}.{b64(claims)}."
    assert call(client, token).status_code == 401


def test_hs256_signed_with_the_public_key_is_401(client, client_jwks):
    """The classic key-confusion attack: HMAC keyed with the issuer's public key."""
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUD, "iat": now, "exp": now + 300, "jti": "h-1"}
    signing_input = f"{b64({'alg': 'HS256', 'typ': 'JWT', 'kid': KID})}.{b64(claims)}"
    secret = json.dumps(client_jwks["keys"][0]).encode()
    digest = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    signature = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert call(client, f"{signing_input}.{signature}").status_code == 401


def test_bad_signature_is_401(client, sign):
    other_key = ECKey.generate_key("P-384")
    assert call(client, sign(AUD, key=other_key)).status_code == 401


def test_unknown_kid_is_401(client, sign):
    assert call(client, sign(AUD, headers={"kid": "not-ours"})).status_code == 401


def test_unknown_issuer_is_401(client, sign):
    assert call(client, sign(AUD, iss="https://attacker.example/")).status_code == 401


@pytest.mark.parametrize(
    "audience",
    [
        BASE_URL + "/cds-services",
        BASE_URL + "/cds-services/other-service",
        "https://elsewhere.example" + PATH,
    ],
)
def test_wrong_audience_is_401(client, sign, audience):
    assert call(client, sign(audience)).status_code == 401


def test_audience_array_containing_the_service_url_is_accepted(client, sign):
    assert call(client, sign(["https://other.example", AUD])).status_code == 200


def test_expired_token_is_401(client, sign):
    now = int(time.time())
    assert call(client, sign(AUD, iat=now - 600, exp=now - 120)).status_code == 401


def test_expiry_within_leeway_is_accepted(client, sign):
    now = int(time.time())
    assert call(client, sign(AUD, iat=now - 300, exp=now - 10)).status_code == 200


def test_iat_in_the_future_is_401(client, sign):
    now = int(time.time())
    assert call(client, sign(AUD, iat=now + 600, exp=now + 900)).status_code == 401


def test_lifetime_longer_than_an_hour_is_401(client, sign):
    now = int(time.time())
    assert call(client, sign(AUD, iat=now, exp=now + 7200)).status_code == 401


@pytest.mark.parametrize("claim", ["jti", "iat", "exp"])
def test_missing_required_claim_is_401(client, sign, claim):
    assert call(client, sign(AUD, **{claim: None})).status_code == 401


def test_replayed_jti_is_401(client, sign):
    token = sign(AUD)
    assert call(client, token).status_code == 200
    assert call(client, token).status_code == 401


def test_a_replayed_call_records_nothing(app, client, sign):
    token = sign(AUD)
    assert call(client, token).status_code == 200
    before = recorded_counts(app)
    assert call(client, token).status_code == 401
    assert recorded_counts(app) == before


def test_a_token_spent_on_a_failed_call_cannot_be_replayed(client, sign):
    token = sign(AUD)
    assert call(client, token, body={"hook": "order-sign"}).status_code == 400
    assert call(client, token).status_code == 401


def test_a_token_spent_on_discovery_cannot_be_replayed_on_a_call(client, sign):
    token = sign(BASE_URL + "/cds-services")
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/cds-services", headers=headers).status_code == 200
    assert client.get("/cds-services", headers=headers).status_code == 401


@pytest.mark.parametrize(
    "token",
    [
        "a.b",
        "a.b.c.d",
        "e30.e30.!!",
        "W10.W10.c2ln",  # header and claims are JSON arrays
        "bm90LWpzb24.bm90LWpzb24.c2ln",  # not JSON
    ],
)
def test_malformed_compact_tokens_are_401(client, token):
    assert call(client, token).status_code == 401


@pytest.mark.parametrize("claim", [{"iss": [ISSUER]}, {"exp": "tomorrow"}, {"iat": True}])
def test_claims_of_the_wrong_type_are_401(client, sign, claim):
    """Signed correctly, so only the claim checks can refuse them."""
    assert call(client, sign(AUD, **claim)).status_code == 401


def test_replay_is_refused_by_another_worker_sharing_the_database(make_app, sign):
    first, second = make_app().test_client(), make_app().test_client()
    token = sign(AUD)
    assert call(first, token).status_code == 200
    assert call(second, token).status_code == 401


def test_typ_other_than_jwt_is_401(client, sign):
    assert call(client, sign(AUD, headers={"typ": "at+jwt"})).status_code == 401


def test_epic_style_extra_claims_are_accepted_and_future_nbf_refused(client, sign):
    now = int(time.time())
    assert call(client, sign(AUD, sub="epic-client", nbf=now - 300)).status_code == 200
    assert call(client, sign(AUD, sub="epic-client", nbf=now + 600)).status_code == 401


def test_tenant_must_be_allowlisted_when_configured(make_app, sign, client_jwks):
    trusted = [TrustedClient(iss=ISSUER, jwks=client_jwks, tenants=["hospital-a"])]
    client = make_app(trusted_clients=trusted).test_client()
    assert call(client, sign(AUD, tenant="hospital-a")).status_code == 200
    assert call(client, sign(AUD, tenant="hospital-b")).status_code == 401
    assert call(client, sign(AUD)).status_code == 401


def test_rs384_is_accepted(make_app, sign):
    rsa_key = RSAKey.generate_key(2048)
    jwk = rsa_key.as_dict(private=False, kid="rsa-1")
    client = make_app(trusted_clients=[TrustedClient(iss=ISSUER, jwks={"keys": [jwk]})]).test_client()
    token = sign(AUD, key=rsa_key, headers={"alg": "RS384", "kid": "rsa-1"})
    assert call(client, token).status_code == 200


def test_401_body_and_logs_reveal_nothing(client, sign, caplog):
    caplog.set_level(logging.DEBUG)
    token = sign(AUD, iss="https://attacker.example/")
    response = call(client, token)
    assert response.status_code == 401
    assert response.get_json()["issue"][0]["diagnostics"] == "Authentication required"
    assert token not in caplog.text
    assert "attacker" not in response.get_data(as_text=True)


class KeySetServer:
    """A real HTTP server publishing a JWK set, counting the requests it receives."""

    def __init__(self, jwks: dict) -> None:
        self.jwks = jwks
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                body = json.dumps(outer.jwks).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def key_server(client_jwks):
    server = KeySetServer(client_jwks)
    yield server
    server.close()


def test_jwks_url_is_fetched_cached_and_refreshed_on_unknown_kid(make_app, sign, key_server, client_key):
    trusted = [TrustedClient(iss=ISSUER, jwks_url=key_server.url("/jwks.json"))]
    client = make_app(trusted_clients=trusted, jwks_refresh_min_interval_seconds=0).test_client()
    assert call(client, sign(AUD)).status_code == 200
    assert call(client, sign(AUD)).status_code == 200
    assert len(key_server.requests) == 1
    rotated = client_key.as_dict(private=False, kid="rotated")
    key_server.jwks = {"keys": [rotated]}
    assert call(client, sign(AUD, headers={"kid": "rotated"})).status_code == 200
    assert len(key_server.requests) == 2


def test_jku_not_on_the_allowlist_is_401_and_never_fetched(make_app, sign, key_server, client_jwks):
    client = make_app(trusted_clients=[TrustedClient(iss=ISSUER, jwks=client_jwks)]).test_client()
    token = sign(AUD, headers={"jku": key_server.url("/attacker-jwks.json")})
    assert call(client, token).status_code == 401
    assert key_server.requests == []


def test_allowlisted_jku_is_used(make_app, sign, key_server, client_jwks):
    jku = key_server.url("/rotating-jwks.json")
    trusted = [TrustedClient(iss=ISSUER, jwks={"keys": []}, jku_allowlist=[jku])]
    client = make_app(trusted_clients=trusted).test_client()
    assert call(client, sign(AUD, headers={"jku": jku})).status_code == 200
    assert key_server.requests == ["/rotating-jwks.json"]


def test_disabled_authentication_warns_loudly_on_start(make_app, caplog):
    caplog.set_level(logging.WARNING)
    client = make_app(auth_disabled=True).test_client()
    assert "AUTHENTICATION IS DISABLED" in caplog.text
    assert call(client, None).status_code == 200
