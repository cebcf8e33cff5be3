"""Launcher of the bundled FHIR R4 test server (Node, ``fhir_test_server/``) for tests and the demo."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from pathlib import Path
from types import TracebackType

SERVER_DIR = Path(__file__).resolve().parent.parent / "fhir_test_server"
READY_PREFIX = "FHIR test server listening on "
EXTERNAL_URL_VARIABLE = "COUNTERSIGN_TEST_FHIR_BASE_URL"


def external_base_url() -> str | None:
    """A FHIR server to test against instead of ours (e.g. a HAPI sandbox), if one is configured."""
    return os.environ.get(EXTERNAL_URL_VARIABLE) or None


class FhirTestServer:
    """Runs ``node fhir_test_server/server.mjs`` on loopback (a free port unless given) until stopped."""

    def __init__(
        self, require_bearer: str | None = None, log_requests: Path | None = None, port: int = 0
    ) -> None:
        self.require_bearer = require_bearer
        self.port = port
        self.log_requests = log_requests
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None

    def start(self, timeout: float = 30) -> str:
        if not (SERVER_DIR / "node_modules").exists():
            raise RuntimeError("FHIR test server not installed: run `npm ci --prefix fhir_test_server`")
        command = [
            shutil.which("node") or "node",
            "server.mjs",
            "--port",
            str(self.port),
            "--host",
            "127.0.0.1",
        ]
        if self.require_bearer:
            command += ["--require-bearer", self.require_bearer]
        if self.log_requests:
            command += ["--log-requests", str(self.log_requests)]
        self._process = subprocess.Popen(command, cwd=SERVER_DIR, stdout=subprocess.PIPE, text=True)
        ready = threading.Event()
        threading.Thread(target=self._watch_output, args=(ready,), daemon=True).start()
        if not ready.wait(timeout) or not self.base_url:
            self.stop()
            raise RuntimeError(f"FHIR test server did not start within {timeout:g} s")
        return self.base_url

    def _watch_output(self, ready: threading.Event) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            if line.startswith(READY_PREFIX) and not ready.is_set():
                self.base_url = line.removeprefix(READY_PREFIX).strip()
                ready.set()
        ready.set()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> FhirTestServer:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
