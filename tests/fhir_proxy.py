"""A real HTTP server in front of the real FHIR test server, to stage outages and refusals.

It forwards every request unchanged, unless told to answer for the server: ``down(503, retry_after)``
(an outage or overload, with or without ``Retry-After``), ``down(None)`` (no answer at all: the
connection is closed), ``refuse(resource_type)`` (422 for any transaction carrying that type, with
an OperationOutcome that echoes the refused resource, as some servers do) or
``refuse(resource_type, after_forwarding=True)`` (the write lands, but the answer says it did not:
a lost answer) or ``lose_answers()`` (every write is forwarded, and the connection closed before
the answer: a server that went down mid-write). Every request it receives is logged with its
time, so tests can count them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

HOP_HEADERS = frozenset({"connection", "keep-alive", "transfer-encoding", "content-length", "host"})


@dataclass(frozen=True)
class Seen:
    at: float
    method: str
    path: str
    status: int | None


class FhirProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.lock = threading.Lock()
        self.seen: list[Seen] = []
        self._local = threading.local()
        self._down: tuple[int | None, str | None] | None = None
        self._refused: str | None = None
        self._after_forwarding = False
        self._answers_lost = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self._server.server_port}/fhir"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def down(self, status: int | None = 503, retry_after: str | None = None) -> None:
        self._down = (status, retry_after)

    def up(self) -> None:
        self._down, self._refused, self._answers_lost = None, None, False

    def lose_answers(self) -> None:
        self._answers_lost = True

    def refuse(self, resource_type: str, *, after_forwarding: bool = False) -> None:
        self._refused, self._after_forwarding = resource_type, after_forwarding

    def requests_since(self, moment: float) -> list[Seen]:
        with self.lock:
            return [seen for seen in self.seen if seen.at >= moment]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FhirProxy:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def answer(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int | None, dict, bytes]:
        """The status, headers and body to send back (status None: close without answering)."""
        if self._down is not None:
            status, retry_after = self._down
            extra = {"Retry-After": retry_after} if retry_after else {}
            return status, extra, _outcome("transient", "Service temporarily unavailable")
        refused = self._refused_resource(method, body)
        if refused is not None and not self._after_forwarding:
            return 422, {}, _echoing_outcome(refused)
        status, answer_headers, answer = self._forward(method, path, headers, body)
        if self._answers_lost and method != "GET":
            return None, {}, b""
        if refused is not None:
            return 422, {}, _echoing_outcome(refused)
        return status, answer_headers, answer

    def _session(self) -> requests.Session:
        """One kept-alive connection to the FHIR server per proxy thread."""
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def _refused_resource(self, method: str, body: bytes) -> dict | None:
        if method != "POST" or self._refused is None or not body:
            return None
        bundle = json.loads(body)
        for entry in bundle.get("entry", []):
            if entry.get("resource", {}).get("resourceType") == self._refused:
                return entry["resource"]
        return None

    def _forward(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        url = self.upstream + path.removeprefix("/fhir")
        sent = {name: value for name, value in headers.items() if name.lower() not in HOP_HEADERS}
        response = self._session().request(method, url, headers=sent, data=body or None, timeout=30)
        kept = {"Content-Type": response.headers.get("Content-Type", "application/fhir+json")}
        return response.status_code, kept, response.content


def _outcome(code: str, diagnostics: str) -> bytes:
    issue = {"severity": "error", "code": code, "diagnostics": diagnostics}
    return json.dumps({"resourceType": "OperationOutcome", "issue": [issue]}).encode()


def _echoing_outcome(resource: dict) -> bytes:
    """A refusal that quotes what it refused, names and dates included, the way careless servers do."""
    subject = (resource.get("for") or resource.get("subject") or {}).get("reference", "")
    diagnostics = (
        f"Resource {resource['resourceType']} refused for {subject} Margaret Ellison born 1951-03-04 "
        f"MRN 88812345: {json.dumps(resource)[:400]}"
    )
    issue = {
        "severity": "error",
        "code": "business-rule",
        "diagnostics": diagnostics,
        "details": {"coding": [{"code": "POLICY_REFUSED"}], "text": "Ellison, Margaret"},
        "expression": [f"Bundle.entry[0].resource.where(id='{resource.get('id', '')}')"],
    }
    return json.dumps({"resourceType": "OperationOutcome", "issue": [issue]}).encode()


def _handler(proxy: FhirProxy) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms ACK wait

        def _handle(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, headers, answer = proxy.answer(self.command, self.path, dict(self.headers), body)
            with proxy.lock:
                proxy.seen.append(Seen(time.monotonic(), self.command, self.path, status))
            if status is None:
                self.close_connection = True
                return
            self.send_response(status)
            for name, value in (headers | {"Content-Length": str(len(answer))}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(answer)

        do_GET = do_POST = do_PUT = _handle

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test reads ``proxy.seen`` instead."""

    return Handler


@pytest.fixture
def proxy(fhir_server: str) -> Iterator[FhirProxy]:
    """A proxy in front of the session's FHIR test server, for one test."""
    with FhirProxy(fhir_server) as running:
        yield running
