"""SMART ``client-confidential-asymmetric`` (private_key_jwt): our JWKS, our assertions at the mock
EHR's token and revocation endpoints, the mock's refusals, and the start-up checks of the keys.

The mock EHR fetches our public keys from the app's own JWKS URL (the app served over HTTP), as an
EHR that registered our ``jwks_uri`` does.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from flask import Flask
from joserfc import jwt
from joserfc.jwk import ECKey, Key, KeySet, RSAKey
from pydantic import ValidationError

from app.settings import Settings
from app.web.jwks import JWKS_PATH
from sandbox.mock_ehr_auth import MockClient, MockEhr
from sandbox.mock_ehr_auth.state import RecordedRequest
from smart_launch.client_auth import ASSERTION_TYPE, ClientKey, client_assertion
from smart_launch.tenants import SmartEhr
from tests.live_server import LiveServer
from tests.smart_helpers import (
    CALLBACK,
    CLIENT_ID,
    CLIENT_SECRET,
    PATIENT,
    ROLES,
    USERS,
    ehr_launch,
    local,
    new_launch,
    sign_out,
)
from tests.writeback_helpers import put

RS384_KID, ES384_KID = "countersign-rs384", "countersign-es384"
PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}


def pem_file(directory: Path, name: str, key: Key, *, private: bool = True) -> Path:
    path = directory / name
    path.write_bytes(key.as_pem(private=private))
    path.chmod(0o600)
    return path


@pytest.fixture
def client_keys(tmp_path: Path) -> list[ClientKey]:
    rsa = pem_file(tmp_path, "rs384.pem", RSAKey.generate_key(2048))
    ec = pem_file(tmp_path, "es384.pem", ECKey.generate_key("P-384"))
    return [
        ClientKey(kid=RS384_KID, path=rsa, algorithm="RS384"),
        ClientKey(kid=ES384_KID, path=ec, algorithm="ES384"),
    ]


@pytest.fixture
def live() -> Iterator[LiveServer]:
    server = LiveServer()
    yield server
    if server.app is not None:
        server.stop()


@pytest.fixture
def ehr(fhir_server: str, live: LiveServer) -> Iterator[MockEhr]:
    """Our client registered with a secret and with the app's JWKS URL: either method may sign in."""
    put(fhir_server, PATIENT)
    client = MockClient(CLIENT_ID, [CALLBACK], CLIENT_SECRET, jwks_uri=live.url + JWKS_PATH)
    with MockEhr(fhir_server, [client], USERS) as running:
        yield running


@pytest.fixture
def serve(make_app, live: LiveServer, ehr: MockEhr, client_keys) -> Callable[..., Flask]:
    """The app with one EHR entry (``private_key_jwt`` unless told otherwise), served on ``live``."""

    def build(**entry: object) -> Flask:
        tenant = SmartEhr(
            iss=ehr.iss, client_id=CLIENT_ID, roles=ROLES, token_endpoint_auth_method="private_key_jwt"
        )
        app = make_app(
            smart_ehrs=[tenant.model_copy(update=entry)],
            smart_allow_http_loopback=True,
            smart_client_keys=client_keys,
        )
        live.serve(app)
        return app

    return build


def client_requests(ehr: MockEhr) -> list[RecordedRequest]:
    """Every request the app made with its client credentials: token and revocation."""
    return ehr.state.requests_to("/token") + ehr.state.requests_to("/revoke")


def published(live: LiveServer) -> KeySet:
    return KeySet.import_key_set(requests.get(live.url + JWKS_PATH, timeout=5).json())


@pytest.mark.parametrize(("kid", "algorithm"), [(RS384_KID, "RS384"), (ES384_KID, "ES384")])
def test_sign_in_refresh_and_revocation_each_send_a_fresh_assertion(serve, ehr, live, kid, algorithm):
    app = serve(client_kid=kid)
    client = app.test_client()
    ehr.state.knobs.expires_in = 1  # the first page refreshes
    assert ehr_launch(client, ehr, "cmio-1").status_code == 303
    ehr.state.knobs.expires_in = 3600
    assert client.get("/app/").status_code == 200
    assert sign_out(client).status_code == 200
    sent = client_requests(ehr)
    assert [r.form.get("grant_type", ["revoke"])[0] for r in sent] == [
        "authorization_code",
        "refresh_token",
        "revoke",
    ]
    assert len(ehr.state.revoked) == 1
    keys, jtis = published(live), set()
    for recorded in sent:
        assert "Authorization" not in recorded.headers and "client_secret" not in recorded.form
        assert recorded.form["client_assertion_type"] == [ASSERTION_TYPE]
        token = jwt.decode(recorded.form["client_assertion"][0], keys, algorithms=[algorithm])
        assert token.header == {"alg": algorithm, "kid": kid, "typ": "JWT"}
        claims = token.claims
        assert claims["iss"] == claims["sub"] == CLIENT_ID
        assert claims["aud"] == f"{ehr.state.public_url}/token"  # the token endpoint, at revocation too
        assert claims["exp"] - time.time() <= 300 and claims["exp"] - claims["iat"] <= 300
        jtis.add(claims["jti"])
    assert len(jtis) == len(sent)


def test_an_entry_with_client_secret_basic_still_signs_in_with_its_secret(serve, ehr):
    client = serve(
        token_endpoint_auth_method="client_secret_basic", client_secret=CLIENT_SECRET
    ).test_client()
    assert ehr_launch(client, ehr, "cmio-1").status_code == 303
    [exchange] = ehr.state.requests_to("/token")
    assert exchange.headers["Authorization"].startswith("Basic ")
    assert "client_assertion" not in exchange.form


def test_an_ehr_that_does_not_list_private_key_jwt_is_refused_before_authorize(serve, ehr, caplog):
    ehr.state.knobs.advertise_private_key_jwt = False
    client = serve().test_client()
    launched = client.get("/app/launch", query_string={"iss": ehr.iss, "launch": new_launch(ehr, "cmio-1")})
    with caplog.at_level(logging.ERROR, logger="smart_launch.launch"):
        page = client.get(local(launched.headers["Location"]))
    assert page.status_code == 502 and "private_key_jwt" in page.get_data(as_text=True)
    [logged] = [record for record in caplog.records if record.name == "smart_launch.launch"]
    assert logged.cause == "private_key_jwt-not-in-token_endpoint_auth_methods_supported"
    assert logged.iss == ehr.iss
    assert ehr.state.requests_to("/authorize") == [] and ehr.state.requests_to("/token") == []


def test_an_ehr_that_accepts_neither_of_our_algorithms_is_refused_before_authorize(serve, ehr, monkeypatch):
    monkeypatch.setattr("sandbox.mock_ehr_auth.app.ALGORITHMS", ["PS384"])
    client = serve(client_kid=ES384_KID).test_client()
    launched = client.get("/app/launch", query_string={"iss": ehr.iss, "launch": new_launch(ehr, "cmio-1")})
    assert client.get(local(launched.headers["Location"])).status_code == 502
    assert ehr.state.requests_to("/authorize") == []


# The mock EHR's token endpoint, called directly: a valid assertion authenticates the client (the
# made-up refresh token is then refused as invalid_grant); a bad one is invalid_client.


def token_request(ehr: MockEhr, assertion: str) -> str:
    form = {
        "grant_type": "refresh_token",
        "refresh_token": "not-a-refresh-token",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    return requests.post(f"{ehr.state.public_url}/token", data=form, timeout=5).json()["error"]


def signed(key: Key, ehr: MockEhr, header: dict | None = None, **claims: object) -> str:
    """A client assertion as ours, with ``header`` and ``claims`` changed."""
    now = int(time.time())
    payload = {
        "iss": CLIENT_ID,
        "sub": CLIENT_ID,
        "aud": f"{ehr.state.public_url}/token",
        "iat": now,
        "exp": now + 240,
        "jti": f"jti-{time.perf_counter_ns()}",
    } | claims
    full_header = {"alg": key.alg, "kid": key.kid, "typ": "JWT"} | (header or {})
    return jwt.encode(full_header, payload, key, algorithms=[full_header["alg"]])


def test_the_mock_ehr_accepts_our_assertion_against_the_published_jwks(serve, ehr, client_keys):
    serve()
    key = client_keys[1].jwk
    assert token_request(ehr, client_assertion(key, CLIENT_ID, f"{ehr.state.public_url}/token")) == (
        "invalid_grant"
    )
    assert token_request(ehr, signed(key, ehr)) == "invalid_grant"


@pytest.mark.parametrize(
    "forgery",
    [
        pytest.param(lambda key, ehr: signed(key, ehr, aud=ehr.iss), id="aud-not-the-token-endpoint"),
        pytest.param(lambda key, ehr: signed(key, ehr, exp=int(time.time()) - 600), id="expired"),
        pytest.param(lambda key, ehr: signed(key, ehr, exp=int(time.time()) + 3600), id="lives-an-hour"),
        pytest.param(lambda key, ehr: signed(key, ehr, {"kid": "not-published"}), id="unknown-kid"),
        pytest.param(lambda key, ehr: signed(key, ehr, {"typ": "JOSE"}), id="typ-not-jwt"),
        pytest.param(lambda key, ehr: signed(key, ehr, iss="someone-else"), id="iss-not-sub"),
        pytest.param(
            lambda key, ehr: signed(
                ECKey.generate_key("P-384", parameters={"kid": key.kid, "alg": "ES384"}), ehr
            ),
            id="signed-by-another-key",
        ),
    ],
)
def test_the_mock_ehr_refuses_a_bad_assertion(serve, ehr, client_keys, forgery):
    serve()
    assert token_request(ehr, forgery(client_keys[1].jwk, ehr)) == "invalid_client"


def test_the_mock_ehr_refuses_a_replayed_assertion(serve, ehr, client_keys):
    serve()
    assertion = signed(client_keys[0].jwk, ehr)
    assert token_request(ehr, assertion) == "invalid_grant"
    assert token_request(ehr, assertion) == "invalid_client"


def test_the_jwks_shows_only_public_keys_and_unknown_kids_are_404(make_app, client_keys):
    client = make_app(smart_client_keys=client_keys).test_client()
    answer = client.get(JWKS_PATH)
    assert answer.status_code == 200 and "max-age" in answer.headers["Cache-Control"]
    keys = answer.get_json()["keys"]  # beside the Provenance signing key: one key set
    assert {(key["kid"], key["kty"], key["alg"], key["use"]) for key in keys} >= {
        (RS384_KID, "RSA", "RS384", "sig"),
        (ES384_KID, "EC", "ES384", "sig"),
    }
    assert all(PRIVATE_MEMBERS.isdisjoint(key) for key in keys)
    one = client.get(f"{JWKS_PATH}/{ES384_KID}")
    assert one.status_code == 200 and one.get_json() == next(k for k in keys if k["kid"] == ES384_KID)
    assert client.get(f"{JWKS_PATH}/not-a-key").status_code == 404


def test_a_kid_published_twice_stops_start_up(make_app, client_keys):
    twin = client_keys[1].model_copy(update={"kid": RS384_KID})
    with pytest.raises(ValueError, match="published twice"):
        make_app(smart_client_keys=[client_keys[0], twin])


@pytest.mark.parametrize(
    ("content", "algorithm"),
    [
        pytest.param(lambda: b"-----BEGIN PRIVATE KEY-----\nnot a key\n", "RS384", id="not-pem"),
        pytest.param(
            lambda: ECKey.generate_key("P-384").as_pem(private=True), "RS384", id="ec-key-for-rs384"
        ),
        pytest.param(lambda: ECKey.generate_key("P-256").as_pem(private=True), "ES384", id="p256-for-es384"),
        pytest.param(lambda: RSAKey.generate_key(2048).as_pem(private=False), "RS384", id="public-key-only"),
        pytest.param(lambda: RSAKey.generate_key(1024).as_pem(private=True), "RS384", id="rsa-1024"),
    ],
)
@pytest.mark.filterwarnings("ignore:Key size should be")
def test_a_malformed_client_key_setting_stops_start_up_naming_it(tmp_path, monkeypatch, content, algorithm):
    path = tmp_path / "key.pem"
    path.write_bytes(content())
    setting = f'[{{"kid": "k-1", "path": "{path}", "algorithm": "{algorithm}"}}]'
    monkeypatch.setenv("COUNTERSIGN_SMART_CLIENT_KEYS", setting)
    with pytest.raises(ValidationError, match="smart_client_keys") as refused:
        Settings()
    assert "'k-1'" in str(refused.value) and "not a key" not in str(refused.value)


def test_a_private_key_jwt_entry_without_its_key_stops_start_up(client_keys):
    entry = {
        "iss": "https://ehr.example/fhir",
        "client_id": "c",
        "token_endpoint_auth_method": "private_key_jwt",
    }
    with pytest.raises(ValidationError, match="COUNTERSIGN_SMART_CLIENT_KEYS has no key"):
        Settings(smart_ehrs=[entry])
    with pytest.raises(ValidationError, match="has no key 'missing'"):
        Settings(smart_ehrs=[entry | {"client_kid": "missing"}], smart_client_keys=client_keys)
