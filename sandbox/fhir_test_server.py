"""Launcher of the bundled FHIR R4 test server (Node, ``fhir_servers/node/``) for tests and the demo."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from sandbox.server_process import ServerProcess

SERVER_DIR = Path(__file__).resolve().parent / "fhir_servers" / "node"
EXTERNAL_URL_VARIABLE = "COUNTERSIGN_TEST_FHIR_BASE_URL"


def external_base_url() -> str | None:
    """A FHIR server to test against instead of ours (e.g. a HAPI sandbox), if one is configured."""
    return os.environ.get(EXTERNAL_URL_VARIABLE) or None


class FhirTestServer(ServerProcess):
    """Runs ``node fhir_servers/node/server.mjs`` on loopback (a free port unless given) until stopped."""

    ready_prefix = "FHIR test server listening on "
    name = "FHIR test server"

    def __init__(
        self, require_bearer: str | None = None, log_requests: Path | None = None, port: int = 0
    ) -> None:
        super().__init__()
        self.require_bearer = require_bearer
        self.port = port
        self.log_requests = log_requests

    def command(self) -> list[str]:
        if not (SERVER_DIR / "node_modules").exists():
            raise RuntimeError("FHIR test server not installed: run `npm ci --prefix fhir_test_server`")
        node = shutil.which("node") or "node"
        command = [node, "server.mjs", "--port", str(self.port), "--host", "127.0.0.1"]
        if self.require_bearer:
            command += ["--require-bearer", self.require_bearer]
        if self.log_requests:
            command += ["--log-requests", str(self.log_requests)]
        return command

    def working_directory(self) -> Path:
        return SERVER_DIR
