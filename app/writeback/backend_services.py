"""SMART Backend Services (client_credentials + private_key_jwt): the write-back worker's own token.

Reference smart-launch.md §3.2-3.3: a fresh signed assertion (RS384 or ES384, ``kid``, ``typ``
JWT, ``iss`` = ``sub`` = client_id, ``aud`` = the token URL, ``exp`` at most 5 minutes, a new
``jti``) per token request; the token is reused until shortly before it expires, never refreshed.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from app.settings import DEFAULT_SCOPE, WriteBackServer
from smart_launch.client_auth import ASSERTION_TYPE, client_assertion, read_private_key

RENEW_BEFORE_SECONDS = 30


class TokenError(Exception):
    """The authorization server did not issue a token; the message carries no secret."""


@dataclass
class BackendServicesToken:
    client_id: str
    token_url: str
    private_key_path: Path
    kid: str
    algorithm: str = "RS384"
    scope: str = DEFAULT_SCOPE
    timeout: float = 10.0
    session: requests.Session = field(default_factory=requests.Session)
    _token: str | None = None
    _expires_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def bearer(self) -> str:
        """A valid access token, fetched only when the cached one is about to expire."""
        with self._lock:
            if self._token is None or time.time() >= self._expires_at - RENEW_BEFORE_SECONDS:
                self._token, self._expires_at = self._fetch()
            return self._token

    def forget(self) -> None:
        """Drop the cached token (the FHIR server refused it)."""
        with self._lock:
            self._token = None

    def assertion(self) -> str:
        """The same SMART assertion the app's sign-in sends; the key file is read each time, so a
        replaced key is used without a restart."""
        key = read_private_key(self.private_key_path, self.algorithm, self.kid)
        return client_assertion(key, self.client_id, self.token_url)

    def _fetch(self) -> tuple[str, float]:
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self.assertion(),
        }
        try:
            response = self.session.post(self.token_url, data=form, timeout=self.timeout)
        except requests.RequestException as error:
            raise TokenError(f"token endpoint unreachable ({type(error).__name__})") from None
        if response.status_code != 200:
            raise TokenError(f"token endpoint answered HTTP {response.status_code}")
        body = response.json()
        if str(body.get("token_type", "")).lower() != "bearer" or not body.get("access_token"):
            raise TokenError("token endpoint answered without a bearer access_token")
        return body["access_token"], time.time() + float(body.get("expires_in", 300))


def token_source(server: WriteBackServer) -> BackendServicesToken | None:
    """The token source for a server configured with SMART Backend Services, else None."""
    if server.auth != "backend-services":
        return None
    return BackendServicesToken(
        server.client_id,
        server.token_url,
        server.private_key_path,
        server.kid,
        server.algorithm,
        server.scope,
    )
