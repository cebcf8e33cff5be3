"""SMART App Launch routes: EHR and standalone launch, authorize, callback, logout.

Order of checks on launch: ``iss`` on the allowlist, ``launch`` present, then a fresh session and a
pending authorization (state, PKCE verifier, nonce) stored server-side; only then discovery. The
callback accepts a state only once, only from the session that started it, and lands on a clean
URL so ``code`` and ``state`` leave the address bar. Sign-ins, refused ones (with a reason class)
and sign-outs are announced on ``smart_launch.signals`` for the host's audit.
"""

from __future__ import annotations

import logging
import secrets

from flask import Blueprint, Response, current_app, redirect, render_template, request, url_for

from smart_launch import sign_out, signals, store
from smart_launch.client_auth import unsupported
from smart_launch.discovery import DiscoveryError
from smart_launch.id_token import IdTokenError, fetch_key_set, validate_id_token
from smart_launch.oauth import TokenError, authorization_url, exchange_code, new_code_verifier, new_state
from smart_launch.refresh import token_expiry
from smart_launch.roles import relative_user, role_of
from smart_launch.session import (
    browser_session,
    clear_session_cookie,
    set_session_cookie,
    smart_config,
)
from smart_launch.store import PendingAuthorization
from smart_launch.tenants import SmartEhr

log = logging.getLogger(__name__)
CONTEXT_FIELDS = (
    "patient",
    "encounter",
    "fhirContext",
    "need_patient_banner",
    "smart_style_url",
    "intent",
    "appContext",
)
RELAUNCH = "This sign-in could not be completed. Launch Countersign again from your EHR."
CLIENT_AUTH_REFUSED = (
    "The EHR does not accept the way Countersign is set up to sign in there (private_key_jwt). "
    "Ask your administrator to check Countersign's registration with this EHR."
)
REFUSAL_REASONS: dict[type[Exception], str] = {
    DiscoveryError: "discovery-failed",
    TokenError: "token-exchange-failed",
    IdTokenError: "id-token-invalid",
}


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/launch", view_func=launch, methods=["GET"])
    bp.add_url_rule("/launch/standalone", view_func=standalone, methods=["POST"])
    bp.add_url_rule("/authorize", view_func=authorize, methods=["GET"])
    bp.add_url_rule("/callback", view_func=callback, methods=["GET"])
    bp.add_url_rule("/logout", view_func=logout, methods=["POST"])


def _problem(status: int, message: str) -> tuple[str, int]:
    return render_template("problem.html", message=message), status


def launch():
    """EHR launch (``iss`` + ``launch``), or the landing page when opened without them."""
    iss, launch_id = request.args.get("iss"), request.args.get("launch")
    if iss is None and launch_id is None:
        return render_template("launch.html", standalone=smart_config().standalone_ehr())
    ehr = smart_config().ehr(iss)
    if ehr is None:
        log.warning("SMART launch refused: iss is not a configured EHR")
        return _problem(400, "Countersign is not registered with the EHR that launched it.")
    if not launch_id:
        return _problem(400, "The EHR launch carried no launch context.")
    return _begin(ehr, launch_id, embedded=True)


def standalone():
    ehr = smart_config().standalone_ehr()
    if ehr is None:
        return _problem(400, "No EHR is configured for a standalone launch.")
    return _begin(ehr, None, embedded=False)


def _begin(ehr: SmartEhr, launch_id: str | None, *, embedded: bool) -> Response:
    config = smart_config()
    previous = browser_session()
    if previous is not None:
        sign_out.end(config, previous, sign_out.RELAUNCH)  # a relaunch never inherits the old context
    cookie, row = store.new_session(config.engine, config.session_seconds, embedded=embedded)
    state = new_state()
    store.add_pending(
        config.engine,
        config.sealer,
        PendingAuthorization(
            state=state,
            session_id=row.id,
            iss=ehr.key,
            launch=launch_id,
            code_verifier=new_code_verifier(),
            nonce=secrets.token_urlsafe(24),
            embedded=embedded,
            created_at=store.utcnow(),
        ),
    )
    response = redirect(url_for("smart_launch.authorize", state=state), 303)
    set_session_cookie(response, cookie, embedded=embedded)
    return response


def authorize():
    """Send the browser to the EHR; if the launch cookie did not come back, offer a new window."""
    config = smart_config()
    state = request.args.get("state", "")
    pending = store.pending_for_start(config.engine, config.sealer, state)
    if pending is None:
        return _problem(400, RELAUNCH)
    row, cookie = browser_session(), None
    if row is None or row.id != pending.session_id:
        if request.args.get("window") != "new":
            return render_template("cookies_blocked.html", state=state), 200
        cookie, row = store.new_session(config.engine, config.session_seconds, embedded=False)
        if not store.rebind_once(config.engine, state, row.id):
            return _problem(400, RELAUNCH)
    ehr = config.ehr(pending.iss)
    if ehr is None:
        return _problem(400, RELAUNCH)
    try:
        discovered = config.discovery.get(ehr.key)
    except DiscoveryError as error:
        log.warning("SMART discovery failed: %s", error)
        return _problem(502, "The EHR's sign-in service could not be reached. Try again later.")
    refusal = unsupported(ehr, config.client_key(ehr), discovered)
    if refusal is not None:
        log.error(
            "SMART launch refused: the EHR's configuration refuses our private_key_jwt",
            extra={"iss": ehr.key, "cause": refusal},
        )
        return _problem(502, CLIENT_AUTH_REFUSED)
    if not store.mark_started(config.engine, state, row.id):
        return _problem(400, RELAUNCH)
    response = redirect(
        authorization_url(
            ehr,
            discovered,
            redirect_uri=config.redirect_uri,
            state=state,
            code_verifier=pending.code_verifier,
            nonce=pending.nonce,
            launch=pending.launch,
        ),
        303,
    )
    if cookie is not None:
        set_session_cookie(response, cookie, embedded=False)
    return response


def callback():
    config = smart_config()
    row, state = browser_session(), request.args.get("state")
    if row is None or not state:
        return _refused("state-mismatch", None, 400, RELAUNCH)
    pending = store.consume_pending(config.engine, config.sealer, state, row.id)
    if pending is None:
        log.warning("SMART callback refused: unknown, reused, expired or foreign state")
        return _refused("state-mismatch", None, 400, RELAUNCH)
    if "error" in request.args:
        description = request.args.get("error_description") or request.args["error"]
        return _refused(
            "authorization-denied", pending.iss, 403, f"The EHR did not authorise Countersign: {description}"
        )
    codes = request.args.getlist("code")
    ehr = config.ehr(pending.iss)
    if len(codes) != 1 or ehr is None:
        return _refused("callback-malformed", pending.iss, 400, RELAUNCH)
    try:
        discovered = config.discovery.get(ehr.key)
        token = exchange_code(
            ehr,
            discovered,
            key=config.client_key(ehr),
            code=codes[0],
            code_verifier=pending.code_verifier,
            redirect_uri=config.redirect_uri,
            timeout=config.timeout,
        )
        claims = _identity(ehr, discovered, token, pending.nonce)
    except tuple(REFUSAL_REASONS) as error:
        log.warning("SMART sign-in failed: %s", error)
        return _refused(REFUSAL_REASONS[type(error)], ehr.key, 403, RELAUNCH)
    return _signed_in(row, pending, ehr, token, claims)


def _refused(reason: str, iss: str | None, status: int, message: str) -> tuple[str, int]:
    """Report the refusal by its class only: never the code, the state or a token."""
    signals.sign_in_refused.send(current_app._get_current_object(), iss=iss, reason=reason)
    return _problem(status, message)


def _identity(ehr: SmartEhr, discovered, token: dict, nonce: str) -> dict:
    if not token.get("id_token") or not discovered.jwks_uri:
        raise IdTokenError("no id_token, so no verified user")
    keys = fetch_key_set(discovered.jwks_uri, smart_config().timeout)
    return validate_id_token(
        token["id_token"], keys, issuer=discovered.issuer, client_id=ehr.client_id, nonce=nonce
    )


def _signed_in(
    old: store.SmartSession, pending: PendingAuthorization, ehr: SmartEhr, token: dict, claims: dict
):
    """Replace the pre-login session by a new one (new cookie: no session fixation)."""
    config = smart_config()
    store.end_session(config.engine, old.id)
    cookie, row = store.new_session(config.engine, config.session_seconds, embedded=pending.embedded)
    row.iss = ehr.key
    row.access_token = token["access_token"]
    row.refresh_token = token.get("refresh_token")
    row.token_expires_at = token_expiry(token)
    row.scope = token.get("scope")
    row.sub = claims["sub"]
    row.fhir_user = relative_user(claims.get("fhirUser"), ehr.key)
    row.role = role_of(ehr, claims.get("fhirUser"))
    row.context = {name: token[name] for name in CONTEXT_FIELDS if name in token} | {
        "launch": "ehr" if pending.launch is not None else "standalone"
    }
    store.save_session(config.engine, config.sealer, row)
    signals.signed_in.send(
        current_app._get_current_object(),
        iss=row.iss,
        user=row.fhir_user,
        role=row.role,
        session=sign_out.label(row.id),
    )
    landing = config.landing(row.context)
    response = redirect(landing, 303)
    set_session_cookie(response, cookie, embedded=pending.embedded)
    return response


def logout():
    row = browser_session()
    embedded = bool(row and row.embedded)
    if row is not None:
        if request.form.get("csrf_token") != row.csrf_token:
            return _problem(403, "This sign-out request did not come from Countersign.")
        sign_out.end(smart_config(), row, sign_out.SIGN_OUT)
    response = Response(render_template("signed_out.html"))
    clear_session_cookie(response, embedded=embedded)
    return response
