"""The OAuth 2.0 legs of SMART App Launch with Authlib's client: authorize URL, code exchange, refresh,
revocation (RFC 7009); at the token and revocation endpoints the client authenticates as its EHR
entry says (``client_secret_basic``, ``private_key_jwt``, or a public client's ``none``).

PKCE S256 is always sent, whatever discovery says; ``aud`` is always the allowlisted ``iss``;
``scope`` is never sent on refresh (meaning "what was granted"), so a narrowed grant still refreshes.
"""

from __future__ import annotations

import secrets

from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc6749.errors import OAuth2Error
from requests import RequestException

from smart_launch.client_auth import ClientKey, SmartPrivateKeyJWT
from smart_launch.discovery import SmartConfiguration
from smart_launch.tenants import PRIVATE_KEY_JWT, SmartEhr


class TokenError(Exception):
    """The EHR refused or failed a token request; the message never carries a token."""


def new_state() -> str:
    """256 bits from the OS CSPRNG (the spec asks for at least 122)."""
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    """64 unreserved characters (RFC 7636 allows 43-128)."""
    return secrets.token_urlsafe(48)


def _client(ehr: SmartEhr, redirect_uri: str, timeout: float) -> OAuth2Session:
    method = _auth_method(ehr)
    client = OAuth2Session(
        client_id=ehr.client_id,
        client_secret=ehr.client_secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )
    client.timeout = timeout
    return client


def _auth_method(ehr: SmartEhr) -> str:
    if ehr.token_endpoint_auth_method == PRIVATE_KEY_JWT:
        return PRIVATE_KEY_JWT
    return "client_secret_basic" if ehr.client_secret else "none"


def _authenticated(
    ehr: SmartEhr, config: SmartConfiguration, key: ClientKey | None, redirect_uri: str, timeout: float
) -> OAuth2Session:
    """The client for the token and revocation endpoints: the one place that signs assertions."""
    client = _client(ehr, redirect_uri, timeout)
    if ehr.token_endpoint_auth_method == PRIVATE_KEY_JWT:
        if key is None:
            raise TokenError("private_key_jwt is configured without a client key")
        client.register_client_auth_method(SmartPrivateKeyJWT(key.jwk, config.token_endpoint))
    return client


def authorization_url(
    ehr: SmartEhr,
    config: SmartConfiguration,
    *,
    redirect_uri: str,
    state: str,
    code_verifier: str,
    nonce: str,
    launch: str | None,
) -> str:
    scope = ehr.ehr_scope if launch is not None else ehr.standalone_scope
    extra = {"launch": launch} if launch is not None else {}
    with _client(ehr, redirect_uri, 0) as client:
        url, _ = client.create_authorization_url(
            config.authorization_endpoint,
            state=state,
            code_verifier=code_verifier,
            scope=scope,
            aud=ehr.key,
            nonce=nonce,
            **extra,
        )
    return url


def exchange_code(
    ehr: SmartEhr,
    config: SmartConfiguration,
    *,
    key: ClientKey | None,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    timeout: float,
) -> dict:
    with _authenticated(ehr, config, key, redirect_uri, timeout) as client:
        return _checked(
            lambda: client.fetch_token(
                config.token_endpoint, code=code, code_verifier=code_verifier, timeout=timeout
            )
        )


def refresh(
    ehr: SmartEhr, config: SmartConfiguration, *, key: ClientKey | None, refresh_token: str, timeout: float
) -> dict:
    with _authenticated(ehr, config, key, "", timeout) as client:
        return _checked(
            lambda: client.refresh_token(config.token_endpoint, refresh_token=refresh_token, timeout=timeout)
        )


def revoke(
    ehr: SmartEhr, config: SmartConfiguration, *, key: ClientKey | None, refresh_token: str, timeout: float
) -> None:
    """Ask the EHR to revoke a refresh token, if it lists a revocation endpoint, authenticated as at
    the token endpoint; RFC 7009 answers 200 even for a token it no longer knows, so anything else is
    a failure."""
    if not config.revocation_endpoint:
        return
    with _authenticated(ehr, config, key, "", timeout) as client:
        try:
            response = client.revoke_token(
                config.revocation_endpoint,
                token=refresh_token,
                token_type_hint="refresh_token",
                timeout=timeout,
            )
        except RequestException as error:
            raise TokenError(f"revocation endpoint unreachable ({type(error).__name__})") from None
    if response.status_code != 200:
        raise TokenError(f"revocation refused: HTTP {response.status_code}")


def _checked(request) -> dict:
    try:
        token = dict(request())
    except (OAuthError, OAuth2Error) as error:
        raise TokenError(f"token request refused: {getattr(error, 'error', 'error')}") from None
    except (RequestException, ValueError) as error:
        raise TokenError(f"token endpoint unreachable ({type(error).__name__})") from None
    if not token.get("access_token") or str(token.get("token_type", "")).lower() != "bearer":
        raise TokenError("token response lacks a bearer access token")
    return token
