"""Operability: metrics (``/metrics``) and PHI-safe JSON logs; the probes are ``app.web.health``.

``init_app`` wires it to the application with Flask request hooks and subscriptions to
``cds_hooks.signals``; the code it observes only reports events, never imports this package
(except ``metrics`` recorders at the point where a governance decision is known).
"""

from __future__ import annotations

from flask import Blueprint, Flask, Response, current_app

from app.db import DATABASE_KEY
from app.observability import exposition, requests
from app.observability import logging as json_logging
from app.settings import Settings

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics_endpoint() -> Response:
    targets = [server.key for server in current_app.config["COUNTERSIGN"].writeback_servers]
    body = exposition.render(current_app.extensions[DATABASE_KEY], targets)
    return Response(body, content_type=exposition.CONTENT_TYPE)


def init_app(app: Flask, settings: Settings, service_ids: frozenset[str]) -> None:
    json_logging.configure(settings.log_level, settings.log_hash_key)
    requests.init_app(app, service_ids)
    app.register_blueprint(bp)
