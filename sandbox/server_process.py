"""A server run as a child process on loopback that announces its base URL on one stdout line.

The FHIR test server (Node) and the HAPI FHIR server (Java) start this way for the demo and the
tests: the parent waits for the ready line, keeps the child's stderr aside to explain a failed
start, and stops it with SIGTERM (then SIGKILL).
"""

from __future__ import annotations

import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType
from typing import IO, Self


class ServerProcess:
    """Subclasses say how to start the server (``command``) and what its ready line starts with."""

    ready_prefix: str = ""
    name: str = "server"
    start_timeout: float = 30

    def __init__(self) -> None:
        self.base_url = ""
        self._process: subprocess.Popen[str] | None = None
        self._stderr: IO[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def working_directory(self) -> Path | None:
        return None

    def environment(self) -> dict[str, str] | None:
        return None

    def start(self, timeout: float | None = None) -> str:
        timeout = timeout or self.start_timeout
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 - closed by stop()
        self._process = subprocess.Popen(
            self.command(),
            cwd=self.working_directory(),
            env=self.environment(),
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        ready = threading.Event()
        threading.Thread(target=self._watch_output, args=(ready,), daemon=True).start()
        if not ready.wait(timeout) or not self.base_url:
            log = self._stderr_tail()
            self.stop()
            raise RuntimeError(f"{self.name} did not start within {timeout:g} s:\n{log}")
        return self.base_url

    def _watch_output(self, ready: threading.Event) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            if line.startswith(self.ready_prefix) and not ready.is_set():
                self.base_url = line.removeprefix(self.ready_prefix).strip()
                ready.set()
        ready.set()

    def _stderr_tail(self, size: int = 4000) -> str:
        assert self._stderr is not None
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-size:]

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()
