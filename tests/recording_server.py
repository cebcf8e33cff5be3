"""The part every fake endpoint in the tests shares: a real threaded HTTP server on 127.0.0.1 and a
free port, run from a daemon thread inside ``with``, that records what it was sent."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self


class RecordingServer:
    """Subclasses give the request handler; ``_release`` wakes handlers that wait (slow modes)."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.raw_requests: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError
