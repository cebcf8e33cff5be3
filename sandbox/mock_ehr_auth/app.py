"""The mock EHR's HTTP face: SMART discovery, authorize, token, revoke, JWKS, launches, FHIR proxy,
EHR page."""

from __future__ import annotations

import json
import time
from urllib.parse import urlencode

import requests
from authlib.common.security import generate_token
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from flask import Flask, Response, jsonify, render_template_string, request

from sandbox.mock_ehr_auth.assertions import ALGORITHMS, SmartClientAssertion
from sandbox.mock_ehr_auth.grants import (
    SmartOpenIdCode,
    SmartRequest,
    StrictPkce,
    code_grant,
    refresh_grant,
    revocation_endpoint,
)
from sandbox.mock_ehr_auth.state import (
    ASSERTION_METHOD,
    IssuedToken,
    LaunchContext,
    MockState,
    RecordedRequest,
)

CAPABILITIES = [
    "launch-ehr",
    "launch-standalone",
    "client-public",
    "client-confidential-symmetric",
    "sso-openid-connect",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-banner",
    "permission-offline",
    "permission-patient",
    "permission-user",
    "permission-v2",
]
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-encoding", "content-length"}
LOGIN_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Mock EHR sign-in</title></head><body><h1>Mock EHR: sign in</h1>
<form method="post" action="{{ action }}">
<label for="user">User</label><select id="user" name="user">
{% for user in users %}
<option value="{{ user.id }}">{{ user.name }} ({{ user.fhir_user }})</option>{% endfor %}
</select><button type="submit">Sign in and allow</button></form></body></html>"""
EHR_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Mock EHR</title>
<style>body{margin:0;font-family:sans-serif}header{background:#333;color:#fff;padding:.5rem}
iframe{border:0;width:{{ width }};height:90vh}</style></head>
<body><header>Mock EHR · patient {{ patient or 'none' }}</header>
<iframe id="app" title="Countersign" src="{{ src }}"
 sandbox="allow-forms allow-modals allow-pointer-lock allow-popups allow-popups-to-escape-sandbox
 allow-same-origin allow-scripts allow-downloads"></iframe>
</body></html>"""


def create_mock_ehr(state: MockState) -> Flask:
    app = Flask(__name__)
    server = _authorization_server(app, state)

    @app.before_request
    def record() -> None:
        with state.lock:
            state.requests.append(
                RecordedRequest(
                    request.method,
                    request.path,
                    request.args.to_dict(flat=False),
                    request.form.to_dict(flat=False),
                    dict(request.headers),
                )
            )

    @app.get("/fhir/.well-known/smart-configuration")
    def smart_configuration() -> Response:
        document = {
            "issuer": state.fhir_base,
            "jwks_uri": f"{state.public_url}/jwks",
            "authorization_endpoint": f"{state.public_url}/authorize",
            "token_endpoint": f"{state.public_url}/token",
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic"],
            "scopes_supported": [
                "openid",
                "fhirUser",
                "launch",
                "offline_access",
                "patient/*.rs",
                "user/*.rs",
            ],
            "response_types_supported": ["code"],
            "capabilities": CAPABILITIES,
            "code_challenge_methods_supported": ["S256"] if state.knobs.advertise_s256 else [],
        }
        if state.knobs.advertise_revocation:
            document["revocation_endpoint"] = f"{state.public_url}/revoke"
        if state.knobs.advertise_private_key_jwt:
            _advertise_private_key_jwt(document)
        return jsonify(document)

    @app.get("/jwks")
    def jwks() -> Response:
        return jsonify({"keys": [state.key.as_dict(private=False)]})

    @app.route("/authorize", methods=["GET", "POST"])
    def authorize():
        launch = state.launches.get(request.values.get("launch", ""))
        user = launch.user_id if launch else request.form.get("user")
        try:
            grant = server.get_consent_grant(end_user=user)
        except OAuth2Error as error:
            return jsonify(dict(error.get_body())), error.status_code
        if user is None or user not in state.users:
            action = f"/authorize?{urlencode(request.args)}"
            return render_template_string(LOGIN_PAGE, action=action, users=state.users.values())
        return server.create_authorization_response(grant=grant, grant_user=user)

    @app.post("/token")
    def token() -> Response:
        return server.create_token_response()

    @app.post("/revoke")
    def revoke() -> Response:
        return server.create_endpoint_response("revocation")

    @app.post("/launches")
    def create_launch() -> tuple[Response, int]:
        """The sandbox EHR's hook: a patient/encounter (and user) in, an opaque ``launch`` id out."""
        body = request.get_json(silent=True) or {}
        if body.get("user") not in state.users:
            return jsonify({"error": "user must be one of the configured users"}), 400
        context = LaunchContext(
            user_id=body["user"],
            patient=body.get("patient"),
            encounter=body.get("encounter"),
            fhir_context=body.get("fhirContext") or [],
            need_patient_banner=bool(body.get("need_patient_banner", True)),
            app_context=_app_context(body.get("appContext")),
        )
        return jsonify({"launch": state.new_launch(context), "iss": state.fhir_base}), 201

    @app.get("/ehr")
    def ehr_page() -> str:
        """The EHR screen: the app's launch URL in a sandboxed iframe, as smart-launcher-v2 does."""
        user, patient = request.args.get("user", ""), request.args.get("patient")
        if user not in state.users:
            return "unknown user", 400
        context = LaunchContext(
            user_id=user, patient=patient, app_context=_app_context(request.args.get("appContext"))
        )
        launch_id = state.new_launch(context)
        src = f"{request.args['app']}?{urlencode({'iss': state.fhir_base, 'launch': launch_id})}"
        return render_template_string(
            EHR_PAGE, src=src, patient=patient, width=request.args.get("width", "100%")
        )

    @app.route("/fhir/<path:path>", methods=["GET", "POST", "PUT", "DELETE"])
    def fhir_proxy(path: str) -> Response:
        if _bearer_token(state) is None:
            body = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login"}]}
            return jsonify(body), 401
        upstream = requests.request(
            request.method,
            f"{state.fhir_upstream}/{path}",
            params=request.args,
            data=request.get_data(),
            headers={
                "Content-Type": request.content_type or "application/fhir+json",
                "Accept": "application/fhir+json",
                **_cache_control(),
            },
            timeout=10,
        )
        headers = {name: value for name, value in upstream.headers.items() if name.lower() not in HOP_HEADERS}
        return Response(upstream.content, status=upstream.status_code, headers=headers)

    return app


def _advertise_private_key_jwt(document: dict) -> None:
    """SMART's discovery of client-confidential-asymmetric: the capability, the method, the algorithms."""
    document["capabilities"] = [*document["capabilities"], "client-confidential-asymmetric"]
    methods = document["token_endpoint_auth_methods_supported"]
    document["token_endpoint_auth_methods_supported"] = [*methods, "private_key_jwt"]
    document["token_endpoint_auth_signing_alg_values_supported"] = ALGORITHMS


def _cache_control() -> dict[str, str]:
    """The app's ``Cache-Control``, passed on: its ``no-cache`` must reach a server that answers
    repeated searches from a cache (HAPI, for 60 s), or the app reads a stale record."""
    value = request.headers.get("Cache-Control")
    return {"Cache-Control": value} if value else {}


def _app_context(value: object) -> str | None:
    """SMART's ``appContext`` is a string; a JSON object given by a test is sent as its JSON text."""
    if value is None or value == "":
        return None
    return value if isinstance(value, str) else json.dumps(value)


def _bearer_token(state: MockState) -> IssuedToken | None:
    header = request.headers.get("Authorization", "")
    if not header.startswith("Bearer "):
        return None
    token = state.tokens.get(header.removeprefix("Bearer "))
    return token if token and not token.is_expired() and not token.revoked else None


def _authorization_server(app: Flask, state: MockState) -> AuthorizationServer:
    def save_token(token: dict, oauth_request) -> None:
        issued = IssuedToken(
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token"),
            client_id=oauth_request.client.client_id,
            scope=token.get("scope", ""),
            user_id=oauth_request.user,
            expires_in=int(token["expires_in"]),
            issued_at=time.time(),
        )
        with state.lock:
            state.tokens[issued.access_token] = issued
            if issued.refresh_token:
                state.refresh_tokens[issued.refresh_token] = issued

    server = AuthorizationServer(app, query_client=state.clients.get, save_token=save_token)
    server.register_token_generator(
        "default",
        BearerTokenGenerator(
            access_token_generator=lambda *args, **kwargs: generate_token(42),
            refresh_token_generator=lambda *args, **kwargs: generate_token(48),
            expires_generator=lambda client, grant_type: state.knobs.expires_in,
        ),
    )
    server.register_grant(
        code_grant(state), [StrictPkce(required=True), SmartRequest(state), SmartOpenIdCode(state)]
    )
    server.register_grant(refresh_grant(state))
    server.register_endpoint(revocation_endpoint(state))
    server.register_client_auth_method(ASSERTION_METHOD, SmartClientAssertion(state))
    return server
