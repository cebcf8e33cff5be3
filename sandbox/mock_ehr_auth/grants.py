"""Authlib grants with SMART's rules: strict PKCE, ``aud`` and ``launch`` checks, context, RS384 OIDC;
and RFC 7009 revocation."""

from __future__ import annotations

import base64
import time
from typing import ClassVar

from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc6749.errors import InvalidGrantError, InvalidRequestError
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode

from sandbox.mock_ehr_auth.state import ASSERTION_METHOD, AuthCode, IssuedToken, MockState

CODE_LIFETIME_SECONDS = 60
#: At the token and revocation endpoints alike; each client may use only what it registered.
CLIENT_AUTH_METHODS = ["none", "client_secret_basic", ASSERTION_METHOD]


class StrictPkce(CodeChallenge):
    """S256 only, and required for every client (stock Authlib allows plain and optional PKCE)."""

    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]

    def validate_code_challenge(self, grant, redirect_uri):
        data = grant.request.payload.data
        if not data.get("code_challenge") or data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("PKCE with code_challenge_method=S256 is required")
        super().validate_code_challenge(grant, redirect_uri)

    def get_authorization_code_challenge(self, authorization_code: AuthCode) -> str:
        return authorization_code.code_challenge

    def get_authorization_code_challenge_method(self, authorization_code: AuthCode) -> str:
        return authorization_code.code_challenge_method


class SmartRequest:
    """``aud`` must be this EHR's FHIR base; the ``launch`` scope needs a known, unused launch id."""

    def __init__(self, state: MockState) -> None:
        self.state = state

    def __call__(self, grant) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.validate)
        grant.register_hook("after_create_token_response", self.add_context)

    def validate(self, grant, redirect_uri) -> None:
        data = grant.request.payload.data
        if data.get("aud") != self.state.fhir_base:
            raise InvalidRequestError("aud must be this EHR's FHIR base URL")
        if not data.get("state"):
            raise InvalidRequestError("state is required")
        if "launch" in grant.request.payload.scope.split():
            launch = self.state.launches.get(data.get("launch", ""))
            if launch is None or launch.used:
                raise InvalidRequestError("unknown or used launch")

    def add_context(self, grant, response) -> None:
        _, token, _ = response
        code: AuthCode = grant.request.authorization_code
        context = dict(code.context)
        if self.state.knobs.omit_patient:
            context.pop("patient", None)
        token.update(context)


class SmartOpenIdCode(OpenIDCode):
    """id_tokens signed RS384 with a ``kid``; ``fhirUser`` is the user's FHIR resource URL."""

    def __init__(self, state: MockState) -> None:
        super().__init__(require_nonce=False)
        self.state = state

    def exists_nonce(self, nonce, request) -> bool:
        return False

    def resolve_client_private_key(self, client):
        return self.state.key

    def get_client_algorithm(self, client) -> str:
        return "RS384"

    def get_encode_header(self, client) -> dict:
        return {"alg": "RS384", "kid": self.state.key.kid, "typ": "JWT"}

    def get_client_claims(self, client) -> dict:
        return {"iss": self.state.fhir_base, "aud": [client.get_client_id()], "exp": int(time.time()) + 300}

    def generate_user_info(self, user, scope) -> UserInfo:
        person = self.state.users[user]
        return UserInfo(sub=person.id, fhirUser=f"{self.state.fhir_base}/{person.fhir_user}")

    def encode_id_token(self, token, request) -> str:
        id_token = super().encode_id_token(token, request)
        return _tampered(id_token) if self.state.knobs.tamper_id_token else id_token


def _tampered(id_token: str) -> str:
    """Same header and signature, a payload naming someone else: the signature no longer fits."""
    header, payload, signature = id_token.split(".")
    claims = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)).replace(
        b"Practitioner/", b"Practitioner/x"
    )
    forged = base64.urlsafe_b64encode(claims).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def code_grant(state: MockState) -> type[grants.AuthorizationCodeGrant]:
    class SmartCodeGrant(grants.AuthorizationCodeGrant):
        TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = CLIENT_AUTH_METHODS

        def save_authorization_code(self, code, request):
            data = request.payload.data
            with state.lock:
                context = _consume_launch(state, data.get("launch"), request.payload.scope)
                user_id = context.pop("user_id", None) or request.user
                state.codes[code] = AuthCode(
                    code=code,
                    client_id=request.client.client_id,
                    redirect_uri=request.payload.redirect_uri,
                    scope=request.payload.scope,
                    user_id=user_id,
                    nonce=data.get("nonce"),
                    code_challenge=data["code_challenge"],
                    code_challenge_method=data["code_challenge_method"],
                    context=context,
                )

        def query_authorization_code(self, code, client):
            found = state.codes.get(code)
            if (
                found
                and found.client_id == client.client_id
                and time.time() - found.created < CODE_LIFETIME_SECONDS
            ):
                return found
            return None

        def delete_authorization_code(self, authorization_code):
            state.codes.pop(authorization_code.code, None)

        def authenticate_user(self, authorization_code):
            return authorization_code.user_id

    return SmartCodeGrant


def _consume_launch(state: MockState, launch_id: str | None, scope: str) -> dict:
    if "launch" not in scope.split() or launch_id is None:
        return {}
    launch = state.launches[launch_id]
    launch.used = True
    context: dict = {"user_id": launch.user_id, "need_patient_banner": launch.need_patient_banner}
    if launch.patient:
        context["patient"] = launch.patient
    if launch.encounter:
        context["encounter"] = launch.encounter
    if launch.fhir_context:
        context["fhirContext"] = launch.fhir_context
    if launch.app_context:
        context["appContext"] = launch.app_context
    return context


def refresh_grant(state: MockState) -> type[grants.RefreshTokenGrant]:
    class RotatingRefreshGrant(grants.RefreshTokenGrant):
        TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = CLIENT_AUTH_METHODS
        INCLUDE_NEW_REFRESH_TOKEN = True

        def authenticate_refresh_token(self, refresh_token):
            with state.lock:
                token = state.refresh_tokens.get(refresh_token)
                if token is not None and token.revoked:
                    state.refresh_reuse += 1
                if token is None or token.revoked or state.knobs.refuse_refresh:
                    raise InvalidGrantError("refresh token is not valid")
                return token

        def authenticate_user(self, refresh_token: IssuedToken):
            return refresh_token.user_id

        def revoke_old_credential(self, refresh_token: IssuedToken):
            with state.lock:
                refresh_token.revoked = True

    return RotatingRefreshGrant


def revocation_endpoint(state: MockState) -> type[RevocationEndpoint]:
    class RecordingRevocation(RevocationEndpoint):
        """Revoking either token of a grant revokes both; the token revoked is recorded for tests."""

        CLIENT_AUTH_METHODS: ClassVar[list[str]] = CLIENT_AUTH_METHODS

        def query_token(self, token_string: str, token_type_hint: str | None) -> IssuedToken | None:
            with state.lock:
                if token_type_hint == "access_token":
                    return state.tokens.get(token_string)
                return state.refresh_tokens.get(token_string) or state.tokens.get(token_string)

        def revoke_token(self, token: IssuedToken, request) -> None:
            with state.lock:
                token.revoked = True
                state.revoked.append(request.form["token"])

    return RecordingRevocation
