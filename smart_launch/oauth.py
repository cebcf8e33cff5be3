"""The OAuth 2.0 legs of SMART App Launch with Authlib's client: authorize URL, code exchange, refresh.

PKCE S256 is always sent, whatever discovery says; ``aud`` is always the allowlisted ``iss``;
``scope`` is never sent on refresh (meaning "what was granted"), so a narrowed grant still refreshes.
"""

from __future__ import annotations

import secrets

from authlib.integrations.base_client import OAuthError
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc6749.errors import OAuth2Error
from requests import RequestException

from smart_launch.discovery import SmartConfiguration
from smart_launch.tenants import SmartEhr


class TokenError(Exception):
    """The EHR refused or failed a token request; the message never carries a token."""


def new_state() -> str:
    """256 bits from the OS CSPRNG (the spec asks for at least 122)."""
    return secrets.token_urlsafe(32)


def new_code_verifier() -> str:
    """64 unreserved characters (RFC 7636 allows 43-128)."""
    return secrets.token_urlsafe(48)


def _client(ehr: SmartEhr, redirect_uri: str, timeout: float) -> OAuth2Session:
    client = OAuth2Session(
        client_id=ehr.client_id,
        client_secret=ehr.client_secret,
        token_endpoint_auth_method="client_secret_basic" if ehr.client_secret else "none",
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )
    client.timeout = timeout
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
    code: str,
    code_verifier: str,
    redirect_uri: str,
    timeout: float,
) -> dict:
    with _client(ehr, redirect_uri, timeout) as client:
        return _checked(
            lambda: client.fetch_token(
                config.token_endpoint, code=code, code_verifier=code_verifier, timeout=timeout
            )
        )


def refresh(ehr: SmartEhr, config: SmartConfiguration, *, refresh_token: str, timeout: float) -> dict:
    with _client(ehr, "", timeout) as client:
        return _checked(
            lambda: client.refresh_token(config.token_endpoint, refresh_token=refresh_token, timeout=timeout)
        )


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
