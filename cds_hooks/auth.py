"""Authentication of CDS clients by signed JWT (CDS Hooks 2.0.1 §3.2, best practices; reference §3.3).

Trust is anchored per issuer: only configured ``iss`` values are accepted, their keys come from
an inline JWKS or from URLs on that issuer's allowlist (a ``jku`` elsewhere is never fetched),
and a ``jti`` is accepted once across all workers. Callers learn nothing about why a token failed.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import jwt
import requests
from pydantic import BaseModel, Field, HttpUrl, model_validator

log = logging.getLogger(__name__)

ALLOWED_ALGORITHMS = frozenset({"ES384", "RS384", "ES256", "RS256"})
REQUIRED_CLAIMS = ["iss", "aud", "exp", "iat", "jti"]


class TrustedClient(BaseModel):
    """A CDS client (an EHR) allowed to call the service, keyed by its JWT ``iss``."""

    iss: str
    jwks_url: HttpUrl | None = None
    jwks: dict[str, Any] | None = None
    jku_allowlist: list[str] = Field(default_factory=list)
    tenants: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _needs_keys(self) -> TrustedClient:
        if self.jwks_url is None and self.jwks is None:
            raise ValueError(f"trusted client {self.iss!r} needs jwks_url or jwks")
        return self

    def allowed_jku(self) -> set[str]:
        """The key-set URLs that may be fetched for this issuer, and no others."""
        urls = set(self.jku_allowlist)
        if self.jwks_url is not None:
            urls.add(str(self.jwks_url))
        return urls


class AuthenticationError(Exception):
    """Why a token was refused: kept for logs and metrics, never sent to the caller."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class ReplayGuard(Protocol):
    def claim(self, iss: str, jti: str, expires_at: datetime) -> bool:
        """Record ``jti`` for ``iss``; False when it was already seen (a replay)."""


@dataclass(frozen=True)
class VerifiedClient:
    iss: str
    jti: str
    tenant: str | None


@dataclass
class KeySetCache:
    """JWK sets fetched by URL, cached, and refetched at most once per interval on an unknown kid."""

    timeout: float
    cache_seconds: float
    refresh_min_interval: float
    _entries: dict[str, tuple[float, dict[str, jwt.PyJWK]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def keys(self, url: str, *, refresh: bool = False) -> dict[str, jwt.PyJWK]:
        with self._lock:
            fetched_at, keys = self._entries.get(url, (None, {}))
            now = time.monotonic()
            age = None if fetched_at is None else now - fetched_at
            expired = age is None or age > self.cache_seconds
            may_refresh = refresh and (age is None or age > self.refresh_min_interval)
            if expired or may_refresh:
                keys = self._fetch(url)
                self._entries[url] = (now, keys)
            return keys

    def _fetch(self, url: str) -> dict[str, jwt.PyJWK]:
        try:
            response = requests.get(url, timeout=self.timeout)
            response.raise_for_status()
            return parse_key_set(response.json())
        except (requests.RequestException, ValueError):
            log.warning("could not fetch a trusted client's JWK set", extra={"jwks_url": url})
            return {}


def parse_key_set(jwks: Any) -> dict[str, jwt.PyJWK]:
    """Usable signing keys by ``kid``; keys without a kid or of an unknown type are skipped."""
    keys: dict[str, jwt.PyJWK] = {}
    for entry in jwks.get("keys", []) if isinstance(jwks, dict) else []:
        if not isinstance(entry, dict) or "kid" not in entry:
            continue
        try:
            keys[entry["kid"]] = jwt.PyJWK(entry)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
    return keys


@dataclass
class ClientAuthenticator:
    clients: dict[str, TrustedClient]
    key_sets: KeySetCache
    replay_guard: ReplayGuard
    leeway: int
    max_lifetime: int

    def __post_init__(self) -> None:
        self._inline_keys = {
            iss: parse_key_set(client.jwks) for iss, client in self.clients.items() if client.jwks
        }

    def authenticate(self, authorization: str | None, audience: str) -> VerifiedClient:
        """Verify the bearer JWT for the endpoint at ``audience``; raise AuthenticationError."""
        token = _bearer_token(authorization)
        header, unverified = _unverified_parts(token)
        client = self.clients.get(unverified.get("iss"))
        if client is None:
            raise AuthenticationError("unknown-iss")
        key = self._signing_key(client, header)
        claims = self._verified_claims(token, key, header["alg"], audience, client.iss)
        if client.tenants and claims.get("tenant") not in client.tenants:
            raise AuthenticationError("tenant")
        expires_at = datetime.fromtimestamp(claims["exp"], UTC)
        if not self.replay_guard.claim(client.iss, str(claims["jti"]), expires_at):
            raise AuthenticationError("replayed-jti")
        return VerifiedClient(client.iss, str(claims["jti"]), claims.get("tenant"))

    def _signing_key(self, client: TrustedClient, header: dict) -> Any:
        jku = header.get("jku")
        if jku is not None and jku not in client.allowed_jku():
            raise AuthenticationError("jku-not-allowlisted")
        if jku is None and client.jwks is not None:
            keys, url = self._inline_keys[client.iss], None
        else:
            url = jku or str(client.jwks_url)
            keys = self.key_sets.keys(url)
        kid = header["kid"]
        if kid not in keys and url is not None:
            keys = self.key_sets.keys(url, refresh=True)
        if kid not in keys:
            raise AuthenticationError("unknown-kid")
        return keys[kid].key

    def _verified_claims(self, token: str, key: Any, alg: str, audience: str, iss: str) -> dict:
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                issuer=iss,
                leeway=self.leeway,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.InvalidAudienceError:
            raise AuthenticationError("wrong-aud") from None
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthenticationError("not-yet-valid") from None
        except jwt.MissingRequiredClaimError:
            raise AuthenticationError("missing-claim") from None
        except jwt.PyJWTError:
            raise AuthenticationError("bad-signature") from None
        now = time.time()
        if not isinstance(claims["iat"], int | float) or claims["iat"] > now + self.leeway:
            raise AuthenticationError("iat-in-future")
        if claims["exp"] - claims["iat"] > self.max_lifetime:
            raise AuthenticationError("lifetime-too-long")
        return claims


def _bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("missing-bearer")
    return token.strip()


def _unverified_parts(token: str) -> tuple[dict, dict]:
    """Header and claims before verification: only to pick the issuer and key, never trusted."""
    try:
        decoded = jwt.api_jwt.decode_complete(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise AuthenticationError("malformed") from None
    header, claims = decoded["header"], decoded["payload"]
    if header.get("alg") not in ALLOWED_ALGORITHMS:
        raise AuthenticationError("alg-not-allowed")
    if header.get("typ") != "JWT":
        raise AuthenticationError("typ")
    if not isinstance(header.get("kid"), str) or not header["kid"]:
        raise AuthenticationError("missing-kid")
    if not isinstance(claims, dict):
        raise AuthenticationError("malformed")
    return header, claims
