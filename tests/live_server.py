"""Real HTTP servers for Flask apps in the test process (werkzeug, one thread per request).

The URL is known before the app is built, because Countersign's JWT audience and card links
depend on its public base URL.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from flask import Flask
from werkzeug.serving import make_server


class LiveServer:
    def __init__(self) -> None:
        self.app: Flask | None = None
        self._server = make_server("127.0.0.1", 0, self._dispatch, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _dispatch(self, environ: dict, start_response: Callable) -> object:
        assert self.app is not None, "serve() an app first"
        return self.app.wsgi_app(environ, start_response)

    def serve(self, app: Flask) -> LiveServer:
        self.app = app
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)
