"""SMART App Launch conformance checks that apply to an app (reference smart-launch.md §1.8, §4, §6).

Every check runs against the mock EHR over HTTP and asserts on what it recorded: a refused step
must not have produced the request that would follow it.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from sqlalchemy import text

from app import DATABASE_KEY
from sandbox.mock_ehr_auth import BackgroundServer, MockEhr
from smart_launch.session import COOKIE_NAME
from tests.smart_helpers import (
    CALLBACK,
    CLIENT_ID,
    authorize_at_ehr,
    ehr_launch,
    local,
    new_launch,
    smart_settings,
    standalone_launch,
    to_ehr_authorize,
)

RELAUNCH = "Launch Countersign again from your EHR"


@pytest.fixture
def smart_app(make_app, ehr) -> Flask:
    return make_app(**smart_settings(ehr))


def token_requests(ehr: MockEhr, grant_type: str = "authorization_code") -> list:
    return [r for r in ehr.state.requests_to("/token") if r.form.get("grant_type") == [grant_type]]


def query(url: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(url).query).items()}


class Recorder:
    """A real HTTP server standing in for an attacker's EHR: it only counts what reaches it."""

    def __init__(self) -> None:
        self.hits = 0
        app = Flask("recorder")

        @app.route("/", defaults={"path": ""})
        @app.route("/<path:path>")
        def anything(path: str) -> str:
            self.hits += 1
            return "{}"

        self.server = BackgroundServer(app)


def test_c01_an_iss_not_on_the_allowlist_is_refused_with_no_outbound_request(smart_app):
    recorder = Recorder()
    with recorder.server:
        evil = f"http://127.0.0.1:{recorder.server.port}/fhir"
        response = smart_app.test_client().get("/app/launch", query_string={"iss": evil, "launch": "x"})
    assert response.status_code == 400
    assert "not registered" in response.get_data(as_text=True)
    assert "Location" not in response.headers and COOKIE_NAME not in response.headers.get("Set-Cookie", "")
    assert recorder.hits == 0


@pytest.mark.parametrize("params", [{"launch": "abc"}, {"iss": "IGNORED"}])
def test_c03_a_launch_missing_iss_or_launch_gets_no_authorize_redirect(smart_app, ehr, params):
    params = {name: ehr.iss if value == "IGNORED" else value for name, value in params.items()}
    response = smart_app.test_client().get("/app/launch", query_string=params)
    assert response.status_code == 400
    assert ehr.state.requests_to("/authorize") == []


def test_c06_c08_c09_authorize_request_carries_aud_iss_launch_s256_and_fresh_state(smart_app, ehr):
    ehr.state.knobs.advertise_s256 = False  # S256 is sent even when discovery does not list it
    client = smart_app.test_client()
    first = query(to_ehr_authorize(client, ehr, "cmio-1"))
    second = query(to_ehr_authorize(client, ehr, "cmio-1"))
    for sent in (first, second):
        assert sent["response_type"] == "code" and sent["client_id"] == CLIENT_ID
        assert sent["aud"] == ehr.iss
        assert sent["redirect_uri"] == CALLBACK
        assert sent["code_challenge_method"] == "S256"
        assert re.fullmatch(r"[A-Za-z0-9_-]{43}", sent["code_challenge"])
        assert "launch" in sent["scope"].split() and "openid" in sent["scope"] and "fhirUser" in sent["scope"]
        assert len(sent["state"]) >= 43  # 256 bits, base64url
    assert first["state"] != second["state"] and first["code_challenge"] != second["code_challenge"]
    assert first["launch"] != second["launch"]


def test_c07_the_launch_value_reaches_the_ehr_byte_identical(smart_app, ehr):
    launch = new_launch(ehr, "cmio-1")
    ehr.state.launches["a+b/c=="] = ehr.state.launches.pop(launch)
    client = smart_app.test_client()
    started = client.get("/app/launch", query_string={"iss": ehr.iss, "launch": "a+b/c=="})
    authorize_url = client.get(local(started.headers["Location"])).headers["Location"]
    assert "launch=a%2Bb%2Fc%3D%3D" in authorize_url
    assert query(authorize_url)["launch"] == "a+b/c=="


def test_c10_an_altered_state_is_refused_before_any_token_request(smart_app, ehr):
    client = smart_app.test_client()
    callback = authorize_at_ehr(to_ehr_authorize(client, ehr, "cmio-1"))
    forged = re.sub(r"state=[^&]+", "state=forged-state-value", callback)
    response = client.get(local(forged))
    assert response.status_code == 400 and RELAUNCH in response.get_data(as_text=True)
    assert token_requests(ehr) == []


def test_c11_a_replayed_callback_is_refused_and_the_code_is_exchanged_once(smart_app, ehr):
    client = smart_app.test_client()
    callback = local(authorize_at_ehr(to_ehr_authorize(client, ehr, "cmio-1")))
    assert client.get(callback).status_code == 303
    replay = client.get(callback)
    assert replay.status_code == 400
    assert len(token_requests(ehr)) == 1


def test_c12_a_state_issued_to_one_browser_is_refused_in_another(smart_app, ehr):
    victim, attacker = smart_app.test_client(), smart_app.test_client()
    callback = local(authorize_at_ehr(to_ehr_authorize(victim, ehr, "cmio-1")))
    attacker.get("/app/launch")  # the attacker has a browser of their own, with or without a session
    assert attacker.get(callback).status_code == 400
    assert token_requests(ehr) == []
    assert victim.get(callback).status_code == 303  # the rightful browser can still finish


def test_c13_a_code_without_state_is_refused(smart_app, ehr):
    client = smart_app.test_client()
    authorize_at_ehr(to_ehr_authorize(client, ehr, "cmio-1"))
    assert client.get("/app/callback?code=abc").status_code == 400
    assert token_requests(ehr) == []


def test_c14_an_error_callback_makes_no_token_call_and_escapes_the_description(smart_app, ehr):
    client = smart_app.test_client()
    state = query(to_ehr_authorize(client, ehr, "cmio-1"))["state"]
    response = client.get(
        "/app/callback",
        query_string={"error": "access_denied", "error_description": "<script>x()</script>", "state": state},
    )
    page = response.get_data(as_text=True)
    assert response.status_code == 403 and "&lt;script&gt;" in page and "<script>x()" not in page
    assert token_requests(ehr) == []


def test_c16_the_code_exchange_is_a_confidential_client_form_post_with_the_verifier(smart_app, ehr):
    client = smart_app.test_client()
    authorize_url = to_ehr_authorize(client, ehr, "cmio-1")
    client.get(local(authorize_at_ehr(authorize_url)))
    (exchange,) = token_requests(ehr)
    assert exchange.headers["Authorization"].startswith("Basic ")
    assert "client_secret" not in exchange.form
    assert exchange.form["redirect_uri"] == [CALLBACK]
    assert re.fullmatch(r"[A-Za-z0-9_~.-]{43,128}", exchange.form["code_verifier"][0])


def test_c18_a_launch_without_patient_context_shows_a_no_patient_state(smart_app, ehr):
    ehr.state.knobs.omit_patient = True
    client = smart_app.test_client()
    assert ehr_launch(client, ehr, "cmio-1", patient="smart-p1").status_code == 303
    page = client.get("/app/").get_data(as_text=True)
    assert "No patient in context" in page and "Robin" not in page


def test_c18_a_relaunch_never_inherits_the_previous_patient(smart_app, ehr):
    client = smart_app.test_client()
    ehr_launch(client, ehr, "cmio-1", patient="smart-p1")
    assert "Robin Testpatient" in client.get("/app/").get_data(as_text=True)
    ehr.state.knobs.omit_patient = True
    ehr_launch(client, ehr, "cmio-1", patient="smart-p1")
    assert "Robin" not in client.get("/app/").get_data(as_text=True)


def test_c22_an_expired_token_is_refreshed_once_for_parallel_requests_with_rotation(smart_app, ehr):
    ehr.state.knobs.expires_in = 1
    client = smart_app.test_client()
    ehr_launch(client, ehr, "cmio-1", patient="smart-p1")
    ehr.state.knobs.expires_in = 3600
    cookie = client.get_cookie(COOKIE_NAME).value
    statuses: list[int] = []

    def visit() -> None:
        browser = smart_app.test_client()
        browser.set_cookie(COOKIE_NAME, cookie)
        statuses.append(browser.get("/app/").status_code)

    threads = [threading.Thread(target=visit) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 6
    refreshes = token_requests(ehr, "refresh_token")
    assert len(refreshes) == 1 and "scope" not in refreshes[0].form
    assert ehr.state.refresh_reuse == 0
    with smart_app.extensions[DATABASE_KEY].connect() as connection:
        stored = connection.execute(text("SELECT refresh_token FROM smart_session")).scalar_one()
    assert stored != refreshes[0].form["refresh_token"][0]  # rotated: the old one is gone


def test_c23_a_refused_refresh_ends_the_session(smart_app, ehr):
    ehr.state.knobs.expires_in = 1
    ehr.state.knobs.refuse_refresh = True
    client = smart_app.test_client()
    ehr_launch(client, ehr, "cmio-1")
    first = client.get("/app/")
    assert first.status_code == 401 and "Sign in through your EHR" in first.get_data(as_text=True)
    assert client.get("/app/").status_code == 401
    assert len(token_requests(ehr, "refresh_token")) == 1
    with smart_app.extensions[DATABASE_KEY].connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM smart_session")).scalar_one() == 0


def test_c25_a_tampered_id_token_establishes_no_identity(smart_app, ehr):
    ehr.state.knobs.tamper_id_token = True
    client = smart_app.test_client()
    response = ehr_launch(client, ehr, "cmio-1")
    assert response.status_code == 403 and RELAUNCH in response.get_data(as_text=True)
    assert client.get("/app/").status_code == 401


def test_c28_no_token_in_any_url_log_line_page_or_cookie(smart_app, ehr, caplog):
    caplog.set_level(logging.DEBUG)
    ehr.state.knobs.expires_in = 1
    client = smart_app.test_client()
    seen: list[str] = []
    launched = ehr_launch(client, ehr, "cmio-1", patient="smart-p1")
    ehr.state.knobs.expires_in = 3600
    seen.append(launched.headers["Location"])
    for path in ("/app/", "/app/audit", "/app/models/medication-safety", "/app/launch"):
        page = client.get(path)
        seen += [page.get_data(as_text=True), page.headers.get("Location", "")]
    secrets_issued = [t.access_token for t in ehr.state.tokens.values()]
    secrets_issued += [t.refresh_token for t in ehr.state.tokens.values() if t.refresh_token]
    assert len(secrets_issued) >= 4  # a sign-in and a refresh, each with access and refresh token
    urls = [
        r.path + "?" + "&".join(f"{k}={v}" for k, vs in r.query.items() for v in vs)
        for r in ehr.state.requests
    ]
    haystack = "\n".join([*seen, *urls, caplog.text, client.get_cookie(COOKIE_NAME).value])
    for secret in secrets_issued:
        assert secret not in haystack
    fhir_reads = [r for r in ehr.state.requests if r.path.startswith("/fhir/Patient")]
    assert fhir_reads and all(r.headers["Authorization"].startswith("Bearer ") for r in fhir_reads)


def test_c29_session_cookie_is_opaque_httponly_secure_and_partitioned_when_embedded(smart_app, ehr):
    client = smart_app.test_client()
    embedded = ehr_launch(client, ehr, "cmio-1").headers["Set-Cookie"]
    assert all(part in embedded for part in ("HttpOnly", "Secure", "SameSite=None", "Partitioned"))
    top_level = standalone_launch(smart_app.test_client(), "cmio-1").headers["Set-Cookie"]
    assert "SameSite=Lax" in top_level and "Partitioned" not in top_level and "HttpOnly" in top_level


def test_c30_pages_may_be_framed_only_by_the_configured_ehr(smart_app, ehr):
    policy = smart_app.test_client().get("/app/launch").headers["Content-Security-Policy"]
    directives = dict(part.strip().split(" ", 1) for part in policy.split(";"))
    assert directives["frame-ancestors"] == f"'self' {ehr.state.public_url}"
    assert directives["form-action"] == f"'self' {ehr.state.public_url}"


def test_c31_launch_redirects_only_to_internal_routes(smart_app, ehr):
    response = smart_app.test_client().get(
        "/app/launch",
        query_string={"iss": ehr.iss, "launch": new_launch(ehr, "cmio-1"), "next": "https://evil"},
    )
    assert response.headers["Location"].startswith("/app/authorize?state=")


def test_logout_discards_the_server_side_tokens(smart_app, ehr):
    client = smart_app.test_client()
    ehr_launch(client, ehr, "cmio-1")
    page = client.get("/app/").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/app/logout", data={"csrf_token": csrf}).status_code == 200
    with smart_app.extensions[DATABASE_KEY].connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM smart_session")).scalar_one() == 0
    assert client.get("/app/").status_code == 401


def test_c29_without_the_iframe_cookie_the_launch_continues_in_a_new_window_once(smart_app, ehr):
    iframe, new_window, stranger = smart_app.test_client(), smart_app.test_client(), smart_app.test_client()
    launched = iframe.get("/app/launch", query_string={"iss": ehr.iss, "launch": new_launch(ehr, "cmio-1")})
    start = local(launched.headers["Location"])
    blocked = new_window.get(start)  # the browser did not send the partitioned cookie back
    page = blocked.get_data(as_text=True)
    assert blocked.status_code == 200 and "Open Countersign in a new window" in page
    link = re.search(r'href="([^"]+window=new[^"]*)"', page).group(1).replace("&amp;", "&")
    moved = new_window.get(link)
    assert moved.status_code == 303 and "SameSite=Lax" in moved.headers["Set-Cookie"]
    assert stranger.get(link).status_code == 400  # adopted once only
    assert new_window.get(local(authorize_at_ehr(moved.headers["Location"]))).status_code == 303
    assert new_window.get("/app/").status_code == 200
