"""Request limits and response headers that every route gets, whoever wrote the route.

- JSON bodies nested deeper than ``COUNTERSIGN_MAX_JSON_DEPTH`` are refused (400) before any
  parser or validator recurses into them (the size limit is Flask's ``MAX_CONTENT_LENGTH``).
- Security headers: ``X-Content-Type-Options``, ``Referrer-Policy``, ``Cache-Control: no-store``
  on dynamic responses, HSTS when the public URL is https, and a Content-Security-Policy: strict
  for the app's pages with ``frame-ancestors`` limited to the configured EHR origins, and
  ``default-src 'none'; frame-ancestors 'none'`` for everything else (JSON is never framed).
- Behind ``COUNTERSIGN_TRUSTED_PROXIES`` proxies, the client address comes from X-Forwarded-For.
"""

from __future__ import annotations

import re
from array import array
from itertools import accumulate

from flask import Flask, Response, current_app, request
from werkzeug.middleware.proxy_fix import ProxyFix

from app.settings import Settings
from cds_hooks.errors import OutcomeError

EXTENSION_KEY = "hardening"
JSON_MIMETYPES = frozenset({"application/json", "application/fhir+json"})
API_POLICY = "default-src 'none'; frame-ancestors 'none'"
# Byte tables for json_depth: what to delete, and brackets as +1 / -1 steps.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_OPENING, _CLOSING = b"[{", b"]}"
_NOT_BRACKET = bytes(b for b in range(256) if b not in _OPENING + _CLOSING)
_NOT_STRUCTURAL = bytes(b for b in range(256) if b not in _OPENING + _CLOSING + b'"\\')
_AS_STEPS = bytes.maketrans(_OPENING + _CLOSING, bytes([1, 1, 255, 255]))


def init_app(app: Flask, settings: Settings, ehr_origins: list[str]) -> None:
    """``ehr_origins``: the SMART EHRs' origins, which may frame the app as the configured ones may."""
    app.extensions[EXTENSION_KEY] = {
        "max_depth": settings.max_json_depth,
        "page_policy": page_policy(sorted({*settings.frame_ancestors, *ehr_origins}), sorted(ehr_origins)),
        "hsts": settings.base_url.startswith("https://"),
    }
    if settings.trusted_proxies:
        hops = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)  # type: ignore[method-assign]
    app.before_request(_limit_json_depth)
    app.after_request(_security_headers)


def page_policy(frame_ancestors: list[str], ehr_origins: list[str]) -> str:
    """The CSP of the app's HTML pages: own origin only; framed only by us and the EHRs we serve.

    ``form-action`` also names the EHRs: the standalone launch is a form whose redirects end at the
    EHR's authorization page, and browsers apply ``form-action`` to every hop of that chain.
    """
    ancestors = " ".join(["'self'", *frame_ancestors])
    form_targets = " ".join(["'self'", *ehr_origins])
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; font-src 'self'; form-action {form_targets}; base-uri 'none'; "
        f"frame-ancestors {ancestors}"
    )


def json_depth(document: bytes) -> int:
    """Deepest nesting of arrays and objects, without parsing (brackets inside strings ignored).

    Fast path: keep only quotes, backslashes and brackets. Without backslashes, a bracket sits
    inside a string exactly when an odd number of quotes precede it, so if deleting adjacent
    quote pairs leaves no quote, no string holds a bracket. Otherwise strings are cut exactly.
    """
    skeleton = document.translate(None, _NOT_STRUCTURAL)
    if b"\\" in skeleton or b'"' in skeleton.replace(b'""', b""):
        skeleton = _JSON_STRING.sub(b"", document)
    steps = array("b", skeleton.translate(None, _NOT_BRACKET).translate(_AS_STEPS))
    return max(accumulate(steps), default=0)


def _limit_json_depth() -> None:
    if request.mimetype not in JSON_MIMETYPES:
        return
    limit = current_app.extensions[EXTENSION_KEY]["max_depth"]
    if json_depth(request.get_data()) > limit:
        raise OutcomeError(400, f"the JSON body is nested deeper than {limit} levels")


def _security_headers(response: Response) -> Response:
    config = current_app.extensions[EXTENSION_KEY]
    headers = response.headers
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    is_page = response.mimetype == "text/html"
    headers.setdefault("Content-Security-Policy", config["page_policy"] if is_page else API_POLICY)
    if request.endpoint != "static":
        headers.setdefault("Cache-Control", "no-store")
    if config["hsts"]:
        headers.setdefault("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    return response
