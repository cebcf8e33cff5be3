"""The browser side of a SMART session: the opaque cookie, the current user, and role checks.

The cookie is ``HttpOnly; Secure`` always; ``SameSite=None; Partitioned`` when the app was launched
into the EHR's (cross-site) iframe, ``Lax`` for a standalone launch. Every view declares the roles
it admits with ``require_role``; pages answer an anonymous visitor with the launch page, the API
with a 401 OperationOutcome.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import TypeVar

from flask import Response, current_app, g, jsonify, render_template, request

from fhir_profiles.operation_outcome import operation_outcome
from smart_launch import sign_out, store
from smart_launch.config import EXTENSION_KEY, SmartConfig
from smart_launch.refresh import ensure_active
from smart_launch.store import SmartSession

COOKIE_NAME = "countersign_session"
CSRF_HEADER = "X-CSRF-Token"
F = TypeVar("F", bound=Callable)


def smart_config() -> SmartConfig:
    return current_app.extensions[EXTENSION_KEY]


def set_session_cookie(response: Response, value: str, *, embedded: bool) -> None:
    response.set_cookie(
        COOKIE_NAME,
        value,
        max_age=smart_config().session_seconds,
        path="/",
        secure=True,
        httponly=True,
        samesite="None" if embedded else "Lax",
        partitioned=embedded,
    )


def clear_session_cookie(response: Response, *, embedded: bool) -> None:
    response.delete_cookie(
        COOKIE_NAME,
        path="/",
        secure=True,
        httponly=True,
        samesite="None" if embedded else "Lax",
        partitioned=embedded,
    )


def browser_session() -> SmartSession | None:
    """The session the cookie names (authenticated or not), if it exists and has not expired; an
    expired one is ended when its browser comes back (``countersign sessions end --expired`` ends
    those that never do)."""
    config, cookie = smart_config(), request.cookies.get(COOKIE_NAME)
    row = store.load_session(config.engine, config.sealer, cookie)
    if row is None and cookie:
        expired = store.load_session_by_id(config.engine, config.sealer, store.session_key(cookie))
        if expired is not None:
            sign_out.end(config, expired, sign_out.EXPIRED)
    return row


def current_session() -> SmartSession | None:
    """The signed-in session with a live access token (refreshed if due), once per request."""
    if "smart_session" not in g:
        row = browser_session()
        g.smart_session = ensure_active(smart_config(), row) if row and row.authenticated else None
    return g.smart_session


def require_role(*roles: str, api: bool = False) -> Callable[[F], F]:
    """Admit only a signed-in user holding one of ``roles``; API calls also need the CSRF header."""

    def decorate(view: F) -> F:
        @wraps(view)
        def guarded(*args: object, **kwargs: object):
            row = current_session()
            if row is None:
                return _refuse(401, "Sign in through your EHR to use Countersign", api)
            if row.role not in roles:
                return _refuse(403, "Your role does not allow this", api)
            if api and request.method != "GET" and request.headers.get(CSRF_HEADER) != row.csrf_token:
                return _refuse(403, "Missing or wrong CSRF token", api)
            return view(*args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


def session_ended() -> tuple[str, int]:
    """The EHR refused the session's tokens mid-request: the session is gone, show the launch page."""
    g.smart_session = None
    message = "Your EHR session has ended. Launch Countersign again from your EHR."
    return render_template("launch.html", message=message, standalone=smart_config().standalone_ehr()), 401


def _refuse(status: int, message: str, api: bool):
    if api:
        code = "login" if status == 401 else "forbidden"
        return jsonify(operation_outcome(code, message)), status
    template = "launch.html" if status == 401 else "forbidden.html"
    return render_template(template, message=message, standalone=smart_config().standalone_ehr()), status
