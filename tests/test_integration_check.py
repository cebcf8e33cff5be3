"""``countersign integration-test`` end to end: the command, run as an integration engineer runs it,
against a fresh FHIR test server (so every count is exact), against servers that refuse one of our
profiles or lack a search parameter (a real HTTP proxy in front of it), with bearer and Backend
Services credentials, and with ``--cleanup``."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest
import requests
from click.testing import CliRunner, Result
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from app.cli import main
from app.settings import DEFAULT_SCOPE
from sandbox.ehr.synthetic.resources import SYNTHETIC_TAG
from sandbox.fhir_test_server import FhirTestServer
from tests.tokens import verified

pytestmark = pytest.mark.integration
REFUSED_PROFILE = "https://countersign.health/fhir/StructureDefinition/ai-override-task"
HTEST = f"{SYNTHETIC_TAG['system']}|{SYNTHETIC_TAG['code']}"
STEPS = ["load", "patient-view", "order-select", "order-sign", "accept", "override"]
STEPS += ["encounter-discharge", "sign draft"]
WRITTEN_ABOUT_PATIENTS = ("Provenance", "AuditEvent", "Task", "GuidanceResponse", "RequestGroup")
LOADED_TYPES = ("Patient", "Practitioner", "Condition", "MedicationRequest", "AllergyIntolerance")
LOADED_TYPES += ("Observation", "Encounter", "DocumentReference")


@pytest.fixture
def fresh_fhir() -> Iterator[FhirTestServer]:
    """A FHIR test server of this test's own: nothing on it but what the command writes."""
    with FhirTestServer() as server:
        yield server


class RefusingProxy:
    """A real HTTP proxy in front of a FHIR server that answers 422, as a server that validates
    against profiles would, to any transaction holding a Task that claims ``profile``; and 400, as
    HAPI does, to a search by ``unknown_parameter``."""

    def __init__(
        self, upstream: str, profile: str | None = None, unknown_parameter: str | None = None
    ) -> None:
        self.upstream = upstream.rstrip("/")
        self.profile = profile
        self.unknown_parameter = unknown_parameter
        self._server = make_server("127.0.0.1", 0, self._handle, threaded=True)
        self.base_url = f"http://127.0.0.1:{self._server.port}/fhir"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RefusingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @Request.application
    def _handle(self, request: Request) -> Response:
        body = request.get_data()
        if request.method == "POST" and request.path.rstrip("/") == "/fhir" and self._claims_profile(body):
            return Response(json.dumps(self._refusal()), 422, content_type="application/fhir+json")
        if request.method == "GET" and self.unknown_parameter in request.args:
            return Response(
                json.dumps(self._unknown(request.path)), 400, content_type="application/fhir+json"
            )
        url = self.upstream + request.path.removeprefix("/fhir")
        if request.query_string:
            url += f"?{request.query_string.decode()}"
        forwarded = {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")}
        answer = requests.request(request.method, url, data=body, headers=forwarded, timeout=30)
        return Response(answer.content, answer.status_code, content_type=answer.headers.get("Content-Type"))

    def _claims_profile(self, body: bytes) -> bool:
        try:
            bundle = json.loads(body)
        except ValueError:
            return False
        return any(
            entry.get("resource", {}).get("resourceType") == "Task"
            and self.profile in entry["resource"].get("meta", {}).get("profile", [])
            for entry in bundle.get("entry", [])
        )

    def _refusal(self) -> dict:
        issue = {
            "severity": "error",
            "code": "processing",
            "diagnostics": f"Profile {self.profile}, Element 'Task.statusReason': minimum required = 1",
            "expression": ["Task.statusReason"],
        }
        return {"resourceType": "OperationOutcome", "issue": [issue]}

    def _unknown(self, path: str) -> dict:
        resource_type = path.rstrip("/").rsplit("/", 1)[-1]
        name = self.unknown_parameter
        diagnostics = f'HAPI-0524: Unknown search parameter "{name}" for resource type "{resource_type}"'
        issue = {"severity": "error", "code": "processing", "diagnostics": diagnostics}
        return {"resourceType": "OperationOutcome", "issue": [issue]}


class TokenEndpoint:
    """A SMART Backend Services token endpoint: checks the client's signed assertion, notes the
    scope asked for, and issues ``token``."""

    def __init__(self, public_key: RSAKey, token: str) -> None:
        self.public_key = public_key
        self.token = token
        self.scopes: set[str] = set()
        self._server = make_server("127.0.0.1", 0, self._handle, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.port}/token"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @Request.application
    def _handle(self, request: Request) -> Response:
        try:
            verified(request.form["client_assertion"], self.public_key, "RS384", self.url)
        except (KeyError, JoseError):
            return Response(json.dumps({"error": "invalid_client"}), 400, content_type="application/json")
        self.scopes.add(request.form["scope"])
        body = {"access_token": self.token, "token_type": "bearer", "expires_in": 300}
        return Response(json.dumps(body), content_type="application/json")

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def check(fhir_url: str, *options: str) -> Result:
    return CliRunner().invoke(main, ["integration-test", "--fhir-url", fhir_url, *options])


def rows_of(result: Result) -> list[dict]:
    return json.loads(result.stdout)["rows"]


def test_every_check_passes_against_the_fhir_test_server(fresh_fhir):
    result = check(fresh_fhir.base_url)

    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["step", "check", "expected", "found", "result"]
    assert not [line for line in lines if line.rstrip().endswith("fail")]
    assert "all checks passed" in result.stdout
    for row in (
        "override             Task by ?patient",
        "sign draft           DocumentReference by ?patient",
        "accept               Provenance by ?entity, ?target",
    ):
        assert [line.split()[-3:] for line in lines if line.startswith(row)] == [["1", "1", "pass"]]
    assert "[3/5] waiting for the write-back" in result.stderr


def test_json_report_parses_and_names_every_step(fresh_fhir):
    result = check(fresh_fhir.base_url, "--json")

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["passed"] is True and report["fhir_url"] == fresh_fhir.base_url
    assert list(dict.fromkeys(row["step"] for row in report["rows"])) == STEPS
    assert {row["result"] for row in report["rows"]} <= {"pass", "skipped"}
    skipped = [row for row in report["rows"] if row["result"] == "skipped"]
    assert {row["check"] for row in skipped} == {"valid ($validate)"}  # the test server has no $validate
    written = {row["check"].split()[0] for row in report["rows"] if " by ?" in row["check"]}
    assert written >= {"Device", "Provenance", "AuditEvent", "Task", "DocumentReference"}


def test_a_server_refusing_our_override_task_profile_fails_the_check_and_names_the_profile(fresh_fhir):
    with RefusingProxy(fresh_fhir.base_url, REFUSED_PROFILE) as proxy:
        result = check(proxy.base_url)

    assert result.exit_code == 1, result.output
    assert f"the server refuses profile {REFUSED_PROFILE} at Task.statusReason" in result.stdout
    failed = [line.split("  ")[0] for line in result.stdout.splitlines() if line.rstrip().endswith("fail")]
    assert set(failed) == {"override"}  # the other steps' write-back still landed
    delivered = next(
        line for line in result.stdout.splitlines() if line.startswith("override   ") and "delivered" in line
    )
    assert delivered.split()[-3:] == ["1", "0", "fail"]


def test_a_search_parameter_the_server_lacks_fails_the_rows_that_use_it(fresh_fhir):
    with RefusingProxy(fresh_fhir.base_url, unknown_parameter="entity") as proxy:
        result = check(proxy.base_url, "--json")

    assert result.exit_code == 1, result.output
    failed = [row for row in rows_of(result) if row["result"] == "fail"]
    assert failed and {row["check"].split()[0] for row in failed} == {"Provenance"}
    assert {row["hint"] for row in failed} == {"the server lacks search parameter entity on Provenance"}
    signed = next(r for r in failed if r["step"] == "sign draft")
    assert signed["found"] == 1  # found by _revinclude, but a refused search fails the row anyway


def test_cleanup_leaves_no_test_data_and_nothing_written_about_the_test_patients(fresh_fhir):
    result = check(fresh_fhir.base_url, "--cleanup", "--json")

    assert result.exit_code == 0, result.output
    rows = {(row["step"], row["check"]): row for row in rows_of(result)}
    assert rows[("cleanup", "left on the server")]["found"] == 0
    assert rows[("cleanup", "resources deleted")]["found"] > 50
    base = fresh_fhir.base_url
    for resource_type in LOADED_TYPES:
        tagged = requests.get(
            f"{base}/{resource_type}", params={"_tag": HTEST, "_summary": "count"}, timeout=10
        )
        assert tagged.json()["total"] == 0, resource_type
    for resource_type in WRITTEN_ABOUT_PATIENTS:
        assert requests.get(f"{base}/{resource_type}", timeout=10).json()["total"] == 0, resource_type
    devices = requests.get(f"{base}/Device", timeout=10).json()["total"]
    assert devices > 0  # Countersign's own Devices are shared by every run and kept


def test_the_credentials_are_used_for_every_request_and_a_refusal_is_explained():
    with FhirTestServer(require_bearer="integration-s3cret") as server:
        refused = check(server.base_url)
        accepted = check(server.base_url, "--auth", "bearer", "--token", "integration-s3cret")

    assert refused.exit_code == 1
    assert "HTTP 401 from the server: it does not accept the credentials" in refused.stdout
    assert accepted.exit_code == 0, accepted.output


def test_backend_services_gives_the_write_back_its_own_scope_and_the_check_another(tmp_path):
    key = RSAKey.generate_key(2048)
    (tmp_path / "writer.pem").write_bytes(key.as_pem(private=True))
    tokens = TokenEndpoint(key, "backend-services-token")
    options = ["--auth", "backend-services", "--client-id", "countersign-writer", "--kid", "w1"]
    options += ["--token-url", tokens.url, "--private-key", str(tmp_path / "writer.pem"), "--cleanup"]
    try:
        with FhirTestServer(require_bearer="backend-services-token") as server:
            result = check(server.base_url, *options)
    finally:
        tokens.stop()

    assert result.exit_code == 0, result.output
    assert tokens.scopes == {DEFAULT_SCOPE, "system/*.cruds"}


def test_incomplete_credentials_are_a_usage_error():
    result = check("http://127.0.0.1:9/fhir", "--auth", "backend-services", "--client-id", "countersign")

    assert result.exit_code == 2
    assert "backend-services needs client_id, token_url, private_key_path, kid" in result.output
