"""Operability: metrics (``/metrics``) and PHI-safe JSON logs; the probes are ``app.web.health``.

``/metrics`` answers only a scraper presenting ``COUNTERSIGN_METRICS_TOKEN`` as a bearer token
(compared in constant time); with no token configured it does not exist (404). Metrics name
write-back targets, services and failure rates: reconnaissance an anonymous caller must not get.

``init_app`` wires it to the application with Flask request hooks and subscriptions to
``cds_hooks.signals``; the code it observes only reports events, never imports this package
(except ``metrics`` recorders at the point where a governance decision is known).
"""

from __future__ import annotations

import hashlib
import hmac

from flask import Blueprint, Flask, Response, current_app, request

from app.db import DATABASE_KEY
from app.observability import exposition, requests
from app.observability import logging as json_logging
from app.settings import Settings

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics_endpoint() -> Response:
    settings = current_app.config["COUNTERSIGN"]
    expected = settings.metrics_token.get_secret_value()
    if not expected:
        return Response("metrics are disabled\n", 404, mimetype="text/plain")
    scheme, _, offered = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not _same(offered.strip(), expected):
        return _challenge(invalid="Authorization" in request.headers)
    targets = [server.key for server in settings.writeback_servers]
    body = exposition.render(current_app.extensions[DATABASE_KEY], targets)
    return Response(body, content_type=exposition.CONTENT_TYPE)


def _same(offered: str, expected: str) -> bool:
    """Compared as digests, so neither the content nor the length of the token leaks in timing."""
    digest = hashlib.sha256
    return hmac.compare_digest(digest(offered.encode()).digest(), digest(expected.encode()).digest())


def _challenge(*, invalid: bool) -> Response:
    """RFC 6750: a missing token gets the bare challenge, a wrong one ``error="invalid_token"``."""
    challenge = 'Bearer realm="countersign-metrics"' + (', error="invalid_token"' if invalid else "")
    headers = {"WWW-Authenticate": challenge}
    return Response("a bearer token is required\n", 401, headers, mimetype="text/plain")


def init_app(app: Flask, settings: Settings, service_ids: frozenset[str]) -> None:
    json_logging.configure(settings.log_level, settings.log_hash_key)
    requests.init_app(app, service_ids)
    app.register_blueprint(bp)
