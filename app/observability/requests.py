"""Per-request observability: a request id, one access-log event and the HTTP metrics per request,
and the subscriptions that turn ``cds_hooks.signals`` into metrics and log correlation.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, current_app, g, request

from app.observability import metrics
from cds_hooks import signals

log = logging.getLogger("countersign.access")
REQUEST_ID_HEADER = "X-Request-ID"
ACCEPTED_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


def init_app(app: Flask, service_ids: frozenset[str]) -> None:
    app.extensions["observed_services"] = service_ids
    app.before_request(_start)
    app.after_request(_finish)
    signals.client_rejected.connect(_client_rejected, sender=app)
    signals.hook_called.connect(_hook_called, sender=app)
    signals.hook_answered.connect(_hook_answered, sender=app)
    signals.feedback_recorded.connect(_feedback_recorded, sender=app)


def _start() -> None:
    """A proxy's or EHR's request id is kept when it looks like one, so logs join across systems."""
    offered = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = offered if ACCEPTED_REQUEST_ID.match(offered) else uuid.uuid4().hex
    g.request_started = time.perf_counter()


def _finish(response: Response) -> Response:
    started = g.get("request_started")
    if started is None:
        return response
    seconds = time.perf_counter() - started
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    service, hook = _service_label(), g.get("hook", "")
    metrics.HTTP_REQUESTS.labels(route, request.method, str(response.status_code), service, hook).inc()
    metrics.HTTP_LATENCY.labels(route, request.method, service, hook).observe(seconds)
    response.headers[REQUEST_ID_HEADER] = g.request_id
    log.info(
        "request",
        extra={
            "route": route,
            "method": request.method,
            "status": response.status_code,
            "duration_ms": round(seconds * 1000, 2),
            "service": service,
            "hook": hook,
        },
    )
    return response


def _service_label() -> str:
    """The CDS service id, only if it is one we offer (a label must never echo request data)."""
    service_id = (request.view_args or {}).get("service_id")
    return service_id if service_id in current_app.extensions["observed_services"] else ""


def _client_rejected(app: Flask, *, cause: str) -> None:
    metrics.JWT_REJECTIONS.labels(cause).inc()


def _hook_called(app: Flask, *, service_id: str, hook: str, hook_instance: str) -> None:
    g.hook, g.hook_instance = hook, hook_instance


def _hook_answered(app: Flask, *, service_id: str, hook: str, cards: list[dict]) -> None:
    metrics.record_cards(service_id, hook, cards)


def _feedback_recorded(app: Flask, *, service_id: str, items: list) -> None:
    metrics.record_feedback(service_id, items)
