"""Running the mock EHR (and, in tests, the app) on loopback in a background thread."""

from __future__ import annotations

import threading
from types import TracebackType

from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from sandbox.mock_ehr_auth.app import create_mock_ehr
from sandbox.mock_ehr_auth.state import MockClient, MockState, MockUser


class BackgroundServer:
    """A threaded Werkzeug server for a WSGI app on ``host``; port 0 picks a free one."""

    def __init__(self, app: Flask, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server: BaseWSGIServer = make_server(host, port, app, threaded=True)
        self.port = self._server.server_port
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> BackgroundServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


class MockEhr:
    """The mock EHR on ``host``: its ``state`` (knobs, request log) and its FHIR base (``iss``)."""

    def __init__(
        self,
        fhir_upstream: str,
        clients: list[MockClient],
        users: list[MockUser],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.state = MockState(fhir_upstream, clients, users)
        self.server = BackgroundServer(create_mock_ehr(self.state), host, port)
        self.state.public_url = f"http://{host}:{self.server.port}"

    @property
    def iss(self) -> str:
        return self.state.fhir_base

    def __enter__(self) -> MockEhr:
        self.server.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.server.stop()


def run_mock_ehr(fhir_upstream: str, redirect_uri: str, client_secret: str, port: int) -> None:
    """Serve the mock EHR in the foreground (demo): one confidential client, one user per role."""
    users = [
        MockUser("clin-1", "Practitioner/clin-1", "Casey Clinician"),
        MockUser("cmio-1", "Practitioner/cmio-1", "Morgan CMIO"),
        MockUser("so-1", "PractitionerRole/so-1", "Sam Safety"),
        MockUser("aud-1", "Practitioner/aud-1", "Alex Auditor"),
    ]
    with MockEhr(
        fhir_upstream, [MockClient("countersign", [redirect_uri], client_secret)], users, port=port
    ) as ehr:
        print(f"mock EHR: iss {ehr.iss}; EHR page {ehr.state.public_url}/ehr?app=...&user=cmio-1", flush=True)
        threading.Event().wait()
