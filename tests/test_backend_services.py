"""Write-back authenticated by SMART Backend Services against a real token endpoint and FHIR server."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from app import WORKER_KEY
from app.settings import WriteBackServer
from sandbox.fhir_test_server import FhirTestServer
from tests.builders import PATIENT_ID, full_prefetch, medication_request, order_sign_request, patient
from tests.tokens import verified
from tests.writeback_helpers import SERVICE, drain, statuses

pytestmark = pytest.mark.integration
ISSUED_TOKEN = "backend-services-token-1"
CLIENT_ID = "countersign-writeback"


class TokenEndpoint:
    """An authorization server's token endpoint that checks private_key_jwt as the spec says."""

    def __init__(self, public_key: RSAKey) -> None:
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                form = dict(
                    urllib.parse.parse_qsl(self.rfile.read(int(self.headers["Content-Length"])).decode())
                )
                outer.requests.append(form)
                status, body = outer.answer(form, public_key)
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/token"
        self.seen_jti: set[str] = set()
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def answer(self, form: dict, public_key: RSAKey) -> tuple[int, dict]:
        try:
            assertion = verified(form["client_assertion"], public_key, "RS384", self.url)
        except (KeyError, JoseError):
            return 400, {"error": "invalid_client"}
        header, claims = assertion.header, assertion.claims
        valid = (
            form.get("grant_type") == "client_credentials"
            and form.get("client_assertion_type") == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            and header.get("typ") == "JWT"
            and header.get("kid") == "wb-key-1"
            and claims["iss"] == claims["sub"] == CLIENT_ID
            and claims["exp"] - time.time() <= 300
            and claims["jti"] not in self.seen_jti
            and "system/Provenance.crs" in form.get("scope", "")
        )
        if not valid:
            return 400, {"error": "invalid_client"}
        self.seen_jti.add(claims["jti"])
        return 200, {
            "access_token": ISSUED_TOKEN,
            "token_type": "bearer",
            "expires_in": 300,
            "scope": form["scope"],
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def writeback(fhir: FhirTestServer, endpoint: TokenEndpoint, key_path) -> WriteBackServer:
    return WriteBackServer(
        base_url=fhir.base_url,
        auth="backend-services",
        client_id=CLIENT_ID,
        token_url=endpoint.url,
        private_key_path=key_path,
        kid="wb-key-1",
    )


@pytest.fixture
def private_key(tmp_path):
    key = RSAKey.generate_key(2048)
    path = tmp_path / "writeback-key.pem"
    path.write_bytes(key.as_pem(private=True))
    return key, path


def test_write_back_uses_one_backend_services_token_for_many_messages(make_app, auth, private_key):
    key, key_path = private_key
    endpoint = TokenEndpoint(key)
    try:
        with FhirTestServer(require_bearer=ISSUED_TOKEN) as fhir:
            app = make_app(writeback_servers=[writeback(fhir, endpoint, key_path)], outbox_in_process=False)
            client = app.test_client()
            requests.put(  # the EHR's chart holds the patient the hooks are about
                f"{fhir.base_url}/Patient/{PATIENT_ID}",
                json=patient(),
                headers={"Authorization": f"Bearer {ISSUED_TOKEN}"},
                timeout=10,
            ).raise_for_status()
            for index in range(3):
                body = order_sign_request(
                    [medication_request(f"d{index}")], full_prefetch(), fhirServer=fhir.base_url
                )
                client.post(SERVICE, json=body, headers=auth(SERVICE))
            drain(app.extensions[WORKER_KEY])
            found = requests.get(
                f"{fhir.base_url}/GuidanceResponse",
                params={"subject": f"Patient/{PATIENT_ID}"},
                headers={"Authorization": f"Bearer {ISSUED_TOKEN}"},
                timeout=10,
            ).json()
        assert found["total"] == 3
        assert len(endpoint.requests) == 1
    finally:
        endpoint.close()


def test_a_refused_assertion_keeps_messages_pending_for_retry(make_app, auth, private_key, tmp_path):
    key, _ = private_key
    endpoint = TokenEndpoint(key)
    wrong_key = tmp_path / "wrong.pem"
    wrong_key.write_bytes(RSAKey.generate_key(2048).as_pem(private=True))
    try:
        with FhirTestServer(require_bearer=ISSUED_TOKEN) as fhir:
            app = make_app(writeback_servers=[writeback(fhir, endpoint, wrong_key)], outbox_in_process=False)
            body = order_sign_request([medication_request("d1")], full_prefetch(), fhirServer=fhir.base_url)
            app.test_client().post(SERVICE, json=body, headers=auth(SERVICE))
            app.extensions[WORKER_KEY].run_once()
        assert statuses(app) == {"pending": 1}
    finally:
        endpoint.close()
