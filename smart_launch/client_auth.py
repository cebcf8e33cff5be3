"""Authenticating as a client with a key pair: SMART ``client-confidential-asymmetric``, i.e.
``private_key_jwt`` (RFC 7523).

The keys are the host's configuration (PEM files, each with its ``kid``); EHRs fetch their public
halves from the host's JWKS URL, so keys rotate without a new registration. Every request gets a
fresh assertion whose ``aud`` is the token endpoint, also at the revocation endpoint (SMART names
one audience for a client's assertions).
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path
from typing import Literal

from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, JWKRegistry, Key, RSAKey
from pydantic import BaseModel, Field, PrivateAttr, model_validator

from smart_launch.discovery import SmartConfiguration
from smart_launch.tenants import PRIVATE_KEY_JWT, SmartEhr

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: SMART allows at most 5 minutes; 4 still fit at a token endpoint whose clock runs a minute behind.
ASSERTION_LIFETIME_SECONDS = 240
Algorithm = Literal["RS384", "ES384"]
KEY_TYPES: dict[str, str] = {"RS384": "RSA", "ES384": "EC"}
ES384_CURVE = "P-384"
MIN_RSA_BITS = 2048


def read_private_key(path: Path, algorithm: Algorithm, kid: str) -> Key:
    """The private key in the PEM file at ``path``, its JWK carrying ``kid``, ``alg`` and ``use``.
    A ValueError names the file and the kid, never the key's content."""
    parameters = {"kid": kid, "alg": algorithm, "use": "sig"}
    try:
        key = JWKRegistry.import_key(path.read_bytes(), KEY_TYPES[algorithm], parameters)
    except (OSError, ValueError, JoseError) as error:
        raise ValueError(
            f"key {kid!r}: {path} is not a readable {algorithm} PEM key ({type(error).__name__})"
        ) from None
    if not key.is_private or not _strong_enough(key):
        raise ValueError(f"key {kid!r}: {path} is not an {algorithm} private key (EC P-384, RSA ≥ 2048 bits)")
    return key


def _strong_enough(key: Key) -> bool:
    if isinstance(key, ECKey):
        return key.curve_name == ES384_CURVE
    return isinstance(key, RSAKey) and key.raw_value.key_size >= MIN_RSA_BITS


class ClientKey(BaseModel):
    """One of our client keys: a PEM file and the ``kid`` it is published under; read at start-up,
    so that a bad file stops the service rather than the first sign-in."""

    kid: str = Field(min_length=1)
    path: Path
    algorithm: Algorithm = "RS384"
    _jwk: Key = PrivateAttr()

    @model_validator(mode="after")
    def _read(self) -> ClientKey:
        self._jwk = read_private_key(self.path, self.algorithm, self.kid)
        return self

    @property
    def jwk(self) -> Key:
        """The private key; only ``jwk.as_dict(private=False)`` is ever published."""
        return self._jwk


def key_for(keys: list[ClientKey], ehr: SmartEhr) -> ClientKey | None:
    """The key that signs at ``ehr``: the one its ``client_kid`` names, else the first (later keys are
    published ahead of a rotation)."""
    if ehr.client_kid is None:
        return keys[0] if keys else None
    return next((key for key in keys if key.kid == ehr.client_kid), None)


def client_assertion(key: Key, client_id: str, audience: str) -> str:
    """A fresh assertion as SMART profiles it: ``iss`` = ``sub`` = client_id, ``aud`` the token
    endpoint, a new ``jti``, ``kid``, ``alg`` and ``typ`` in the header."""
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": audience,
        "iat": now,
        "exp": now + ASSERTION_LIFETIME_SECONDS,
        "jti": secrets.token_urlsafe(32),
    }
    header = {"alg": key.alg, "kid": key.kid, "typ": "JWT"}
    return jwt.encode(header, claims, key, algorithms=[key.alg])


class SmartPrivateKeyJWT(PrivateKeyJWT):
    """Authlib's ``private_key_jwt`` with SMART's assertion (Authlib's own lives an hour, without kid)."""

    def __init__(self, key: Key, token_endpoint: str) -> None:
        super().__init__(token_endpoint, alg=key.alg)
        self.key = key

    def sign(self, auth, token_endpoint: str) -> str:
        return client_assertion(self.key, auth.client_id, token_endpoint)


def unsupported(ehr: SmartEhr, key: ClientKey | None, discovered: SmartConfiguration) -> str | None:
    """Why the EHR would refuse our ``private_key_jwt``, read from its SMART configuration, as a code
    a log keeps; None if it would not (or the EHR entry uses a secret)."""
    if ehr.token_endpoint_auth_method != PRIVATE_KEY_JWT:
        return None
    if PRIVATE_KEY_JWT not in discovered.token_endpoint_auth_methods:
        return "private_key_jwt-not-in-token_endpoint_auth_methods_supported"
    if key is None:
        return "no-client-key"
    algorithms = discovered.token_endpoint_auth_signing_algs
    if algorithms and key.algorithm not in algorithms:
        return f"{key.algorithm}-not-in-token_endpoint_auth_signing_alg_values_supported"
    return None
