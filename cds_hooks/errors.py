"""Every error leaves as JSON with a FHIR OperationOutcome body, never as an HTML page."""

from __future__ import annotations

from flask import Response, jsonify
from werkzeug.exceptions import HTTPException

from fhir_profiles.operation_outcome import operation_outcome

ISSUE_TYPE_BY_STATUS = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    409: "conflict",
    412: "incomplete",
    413: "too-costly",
    415: "not-supported",
    429: "throttled",
}


class OutcomeError(HTTPException):
    """An HTTP error that carries its OperationOutcome diagnostics and locations."""

    def __init__(self, status: int, diagnostics: str, expression: list[str] | None = None) -> None:
        super().__init__(description=diagnostics)
        self.code = status
        self.expression = expression


def outcome_response(status: int, diagnostics: str, expression: list[str] | None = None) -> Response:
    code = ISSUE_TYPE_BY_STATUS.get(status, "exception")
    response = jsonify(operation_outcome(code, diagnostics, expression=expression))
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


def http_error_response(error: HTTPException) -> Response:
    """Werkzeug's own errors (404, 405, 413, ...) in the same OperationOutcome shape."""
    status = error.code or 500
    if status == 401:
        diagnostics = "Authentication required"
    elif status >= 500:
        diagnostics = "The service failed to process the request"
    else:
        diagnostics = error.description or error.name
    response = outcome_response(status, diagnostics, getattr(error, "expression", None))
    if isinstance(error.response, Response):
        response.headers.extend(
            (k, v) for k, v in error.response.headers.items() if k.lower() in {"allow", "retry-after"}
        )
    allowed = getattr(error, "valid_methods", None)
    if allowed:
        response.headers["Allow"] = ", ".join(allowed)
    return response
