"""The CDS Hooks 2.0.1 HTTP surface: discovery, service calls and feedback.

Each request is authenticated before its body is read, validated against the spec and the hook
definition, given its prefetch, answered through the backend, and recorded before it returns.
A service call spends its token's ``jti`` in the transaction that records it (one write per call);
every other request, and a call that fails, spends it on its own. A replay is a 401 either way.
"""

from __future__ import annotations

import gc
import logging
import traceback
from dataclasses import dataclass
from typing import TypeVar

import orjson
from blinker import NamedSignal
from flask import Blueprint, Flask, Response, current_app, g, jsonify, request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import HTTPException

from cds_hooks import signals
from cds_hooks.auth import AuthenticationError, ClientAuthenticator, VerifiedClient
from cds_hooks.backend import CdsBackend, HookCall, ReplayedToken, UnknownCards, UnknownSuggestions
from cds_hooks.cards import render_card
from cds_hooks.discovery import ServiceDescriptor, discovery_document
from cds_hooks.errors import OutcomeError, http_error_response, outcome_response
from cds_hooks.hooks import HOOKS
from cds_hooks.models import (
    ContextError,
    FeedbackRequest,
    HookRequest,
    describe_validation_error,
    parse_context,
)
from cds_hooks.prefetch import PrefetchUnavailable, ReaderSettings, resolve_prefetch

log = logging.getLogger(__name__)
bp = Blueprint("cds_hooks", __name__, url_prefix="/cds-services")
JSON_TYPES = frozenset({"application/json", "application/fhir+json"})
EXTENSION_KEY = "cds_hooks"
CALL_ENDPOINT = "cds_hooks.call_service"
Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class CdsHooksConfig:
    """What the blueprint needs from the application, set once by ``init_app``."""

    backend: CdsBackend
    authenticator: ClientAuthenticator | None
    public_base_url: str
    reader_settings: ReaderSettings
    require_https_fhir: bool


def init_app(app: Flask, config: CdsHooksConfig) -> None:
    app.extensions[EXTENSION_KEY] = config
    app.register_blueprint(bp)
    app.register_error_handler(HTTPException, _json_error_for_cds_paths)
    app.register_error_handler(Exception, _unexpected_error)
    if config.authenticator is None:
        log.warning(
            "CDS HOOKS CLIENT AUTHENTICATION IS DISABLED: any caller can invoke the services. "
            "Never run this way outside local development."
        )


def _config() -> CdsHooksConfig:
    return current_app.extensions[EXTENSION_KEY]


@bp.before_request
def authenticate() -> Response | None:
    config = _config()
    g.cds_client = None
    if request.method == "OPTIONS" or config.authenticator is None:
        return None
    audience = config.public_base_url + request.path
    try:
        client = config.authenticator.authenticate(request.headers.get("Authorization"), audience)
    except AuthenticationError as error:
        return _unauthorized(error.cause)
    if request.endpoint != CALL_ENDPOINT and not _spent(client):
        return _unauthorized("replayed-jti")
    log.debug("authenticated CDS client", extra={"iss": client.iss, "jti": client.jti})
    g.cds_client = client
    return None


def _unauthorized(cause: str) -> Response:
    log.info("rejected CDS client token", extra={"cause": cause, "path": request.path})
    _announce(signals.client_rejected, cause=cause)
    return outcome_response(401, "Authentication required")


@bp.after_request
def allow_browser_clients(response: Response) -> Response:
    """CORS on every CDS route, preflight included: browser clients such as the sandbox need it."""
    response.headers["Access-Control-Allow-Origin"] = "*"
    response.headers["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    response.headers["Access-Control-Allow-Headers"] = "Authorization, Content-Type"
    return response


@bp.get("")
def discovery() -> Response:
    return jsonify(discovery_document(list(_config().backend.descriptors())))


@bp.post("/<service_id>")
def call_service(service_id: str) -> Response:
    """The token is spent with the record; if the call fails first, it is spent before the error."""
    try:
        return _answer_call(service_id, g.cds_client)
    except ReplayedToken:
        return _unauthorized("replayed-jti")
    except Exception:
        if g.cds_client is not None and not _spent(g.cds_client):
            return _unauthorized("replayed-jti")
        raise


def _spent(client: VerifiedClient) -> bool:
    """Spend the token's ``jti`` on its own; False when it had been spent before (a replay)."""
    try:
        _config().backend.spend_token(client)
    except ReplayedToken:
        return False
    return True


def _answer_call(service_id: str, client: VerifiedClient | None) -> Response:
    config = _config()
    offered = _descriptors(service_id)
    hook_request = _parse_body(HookRequest)
    descriptor = next((d for d in offered if d.hook == hook_request.hook), None)
    if descriptor is None:
        hooks = ", ".join(sorted(d.hook for d in offered))
        raise OutcomeError(400, f"service {service_id} answers {hooks}, not this hook", ["hook"])
    details = {"service_id": service_id, "hook": descriptor.hook}
    _announce(signals.hook_called, **details, hook_instance=hook_request.hookInstance)
    _check_fhir_server(hook_request, config)
    try:
        context = parse_context(HOOKS[descriptor.hook], hook_request.context)
    except ContextError as error:
        raise OutcomeError(400, str(error), [error.field]) from None
    try:
        prefetch = resolve_prefetch(descriptor, hook_request, context, config.reader_settings)
    except PrefetchUnavailable as error:
        raise OutcomeError(412, str(error), [f"prefetch.{error.key}"]) from None
    call = HookCall(service_id, hook_request, context, prefetch, client)
    advice = config.backend.advise(call)
    launch_url = config.backend.app_launch_url()
    cards = [render_card(item, launch_url) for item in advice.advice]
    shown = [rendered.card for rendered in config.backend.record_response(call, advice, cards)]
    _announce(signals.hook_answered, **details, cards=shown)
    return jsonify({"cards": shown})


@bp.post("/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    _descriptors(service_id)
    body = _parse_body(FeedbackRequest)
    try:
        _config().backend.record_feedback(service_id, list(body.feedback))
    except UnknownCards as error:
        raise OutcomeError(
            404, f"cards not issued by {service_id}: {', '.join(error.card_uuids)}", ["feedback.card"]
        ) from None
    except UnknownSuggestions as error:
        raise OutcomeError(400, str(error), ["feedback.acceptedSuggestions"]) from None
    _announce(signals.feedback_recorded, service_id=service_id, items=body.feedback)
    return Response(status=200)


def _announce(signal: NamedSignal, **details: object) -> None:
    """Tell whoever subscribed (``cds_hooks.signals``); the protocol layer never knows who."""
    signal.send(current_app._get_current_object(), **details)


def _descriptors(service_id: str) -> list[ServiceDescriptor]:
    offered = [d for d in _config().backend.descriptors() if d.id == service_id]
    if not offered:
        raise OutcomeError(404, f"no CDS service with id {service_id!r}")
    return offered


def parse_json(data: bytes) -> object:
    """orjson with the cyclic garbage collector paused: a 10,000-resource prefetch is a million new
    objects, and the collections they would trigger mid-parse cost more than the parse itself. The
    collector is only re-enabled by the call that paused it (threads may overlap)."""
    paused = gc.isenabled()
    gc.disable()
    try:
        return orjson.loads(data)
    finally:
        if paused:
            gc.enable()


def _parse_body(model: type[Model]) -> Model:
    if request.mimetype not in JSON_TYPES:
        raise OutcomeError(415, "the body must be application/json")
    try:
        document = parse_json(request.get_data(cache=False))
    except orjson.JSONDecodeError:
        raise OutcomeError(400, "the body is not valid JSON") from None
    try:
        return model.model_validate(document)
    except ValidationError as error:
        diagnostics, locations = describe_validation_error(error)
        raise OutcomeError(400, diagnostics, locations) from None


def _check_fhir_server(hook_request: HookRequest, config: CdsHooksConfig) -> None:
    """Never send a token over plain HTTP where production data flows (spec: MUST be https)."""
    server = hook_request.fhirServer
    if config.require_https_fhir and server is not None and server.scheme != "https":
        raise OutcomeError(400, "fhirServer must use https", ["fhirServer"])


def _is_cds_path() -> bool:
    return request.path == bp.url_prefix or request.path.startswith(f"{bp.url_prefix}/")


def _json_error_for_cds_paths(error: HTTPException) -> Response | HTTPException:
    if not _is_cds_path():
        return error
    return allow_browser_clients(http_error_response(error))


def _unexpected_error(error: Exception) -> Response:
    """A failure is a 500 with an OperationOutcome, never a silent empty card list."""
    frames = "".join(traceback.format_tb(error.__traceback__))
    log.error("unhandled %s on %s\n%s", type(error).__name__, request.path, frames)
    response = outcome_response(500, "The service failed to process the request")
    return allow_browser_clients(response) if _is_cds_path() else response
