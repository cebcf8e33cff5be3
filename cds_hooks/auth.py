"""Authentication of CDS clients by signed JWT (CDS Hooks 2.0.1 §3.2, best practices; reference §3.3).

Trust is anchored per issuer: only configured ``iss`` values are accepted, their keys come from
an inline JWKS or from URLs on that issuer's allowlist (a ``jku`` elsewhere is never fetched).
Verifying a token does not spend it: its ``jti`` is recorded by whoever acts on the request, in the
same transaction as what the request writes (``docs/DECISIONS.md``), so a ``jti`` is accepted once
across all workers. Callers learn nothing about why a token failed.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import requests
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key
from joserfc.jws import JWSRegistry
from pydantic import BaseModel, Field, HttpUrl, model_validator

log = logging.getLogger(__name__)

ALGORITHMS = ("ES384", "RS384", "ES256", "RS256")
SIGNATURES = JWSRegistry(algorithms=ALGORITHMS)
KEY_TYPES = ("EC", "RSA")  # the only key types the allowed algorithms use
REQUIRED_CLAIMS = ("iss", "aud", "exp", "iat", "jti")
TIME_CLAIMS = ("exp", "iat", "nbf")
BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


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


@dataclass(frozen=True)
class VerifiedClient:
    """A caller whose token verified; its ``jti`` is still to be spent (see the module text)."""

    iss: str
    jti: str
    tenant: str | None
    expires_at: datetime


@dataclass
class KeySetCache:
    """JWK sets fetched by URL, cached, and refetched at most once per interval on an unknown kid."""

    timeout: float
    cache_seconds: float
    refresh_min_interval: float
    _entries: dict[str, tuple[float, dict[str, Key]]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def keys(self, url: str, *, refresh: bool = False) -> dict[str, Key]:
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

    def _fetch(self, url: str) -> dict[str, Key]:
        try:
            response = requests.get(url, timeout=self.timeout)
            response.raise_for_status()
            return parse_key_set(response.json())
        except (requests.RequestException, ValueError):
            log.warning("could not fetch a trusted client's JWK set", extra={"jwks_url": url})
            return {}


def parse_key_set(jwks: Any) -> dict[str, Key]:
    """Usable signing keys by ``kid``; keys without a kid, malformed or of another type are skipped."""
    keys: dict[str, Key] = {}
    for entry in jwks.get("keys", []) if isinstance(jwks, dict) else []:
        if not isinstance(entry, dict) or "kid" not in entry or entry.get("kty") not in KEY_TYPES:
            continue
        try:
            keys[entry["kid"]] = JWKRegistry.import_key(entry)
        except (JoseError, ValueError, TypeError):
            continue
    return keys


@dataclass
class ClientAuthenticator:
    clients: dict[str, TrustedClient]
    key_sets: KeySetCache
    leeway: int
    max_lifetime: int

    def __post_init__(self) -> None:
        self._inline_keys = {
            iss: parse_key_set(client.jwks) for iss, client in self.clients.items() if client.jwks
        }

    def authenticate(self, authorization: str | None, audience: str) -> VerifiedClient:
        """Verify the bearer JWT for the endpoint at ``audience``; raise AuthenticationError."""
        token = CompactToken.parse(_bearer_token(authorization))
        issuer = token.claims.get("iss")
        client = self.clients.get(issuer) if isinstance(issuer, str) else None
        if client is None:
            raise AuthenticationError("unknown-iss")
        key = self._signing_key(client, token.header)
        if not token.signed_by(key):
            raise AuthenticationError("bad-signature")
        claims = self._checked_claims(token.claims, audience)
        if client.tenants and claims.get("tenant") not in client.tenants:
            raise AuthenticationError("tenant")
        expires_at = datetime.fromtimestamp(claims["exp"], UTC)
        return VerifiedClient(client.iss, str(claims["jti"]), claims.get("tenant"), expires_at)

    def _signing_key(self, client: TrustedClient, header: dict) -> Key:
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
        return keys[kid]

    def _checked_claims(self, claims: dict, audience: str) -> dict:
        """RFC 7519 §4.1 checks on a verified token, each with its own cause."""
        if any(claims.get(name) is None for name in REQUIRED_CLAIMS):
            raise AuthenticationError("missing-claim")
        if not all(_is_number(claims.get(name, 0)) for name in TIME_CLAIMS):
            raise AuthenticationError("malformed")
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if audience not in audiences:
            raise AuthenticationError("wrong-aud")
        now = time.time()
        if claims["exp"] <= now - self.leeway:
            raise AuthenticationError("expired")
        if claims.get("nbf", now) > now + self.leeway:
            raise AuthenticationError("not-yet-valid")
        if claims["iat"] > now + self.leeway:
            raise AuthenticationError("iat-in-future")
        if claims["exp"] - claims["iat"] > self.max_lifetime:
            raise AuthenticationError("lifetime-too-long")
        return claims


@dataclass(frozen=True)
class CompactToken:
    """A JWS in compact serialisation, decoded once: the header and claims pick the issuer and key
    and are trusted only after ``signed_by`` (joserfc's algorithms do the cryptography)."""

    header: dict
    claims: dict
    signing_input: bytes
    signature: bytes

    @classmethod
    def parse(cls, token: str) -> CompactToken:
        segments = token.split(".")
        if len(segments) != 3 or not all(map(BASE64URL.fullmatch, segments)):
            raise AuthenticationError("malformed")
        try:
            header, claims = (orjson.loads(_base64url(segment)) for segment in segments[:2])
        except (ValueError, orjson.JSONDecodeError):
            raise AuthenticationError("malformed") from None
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise AuthenticationError("malformed")
        if header.get("alg") not in ALGORITHMS:
            raise AuthenticationError("alg-not-allowed")
        if header.get("typ") != "JWT":
            raise AuthenticationError("typ")
        if not isinstance(header.get("kid"), str) or not header["kid"]:
            raise AuthenticationError("missing-kid")
        signing_input = f"{segments[0]}.{segments[1]}".encode()
        return cls(header, claims, signing_input, _base64url(segments[2]))

    def signed_by(self, key: Key) -> bool:
        """The header's algorithm, never the key's: a key of another type, curve or use fails."""
        try:
            algorithm = SIGNATURES.get_alg(self.header["alg"])
            algorithm.check_key(key)
            return algorithm.verify(self.signing_input, self.signature, key)
        except (JoseError, TypeError, ValueError):
            return False


def _bearer_token(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationError("missing-bearer")
    return token.strip()


def _base64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
