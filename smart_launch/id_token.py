"""OpenID Connect id_token validation: the only way the app learns who the user is (``fhirUser``).

Signature against the EHR's JWKS (RS384/ES384, and RS256 which SMART servers must support),
``iss`` = the discovered issuer, ``aud`` contains our client id, ``exp``/``iat`` current, ``nonce``
the one we sent. Anything else means no identity, never a guessed one.
"""

from __future__ import annotations

import requests
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

ALGORITHMS = ["RS384", "ES384", "RS256"]
LEEWAY_SECONDS = 60


class IdTokenError(Exception):
    """The id_token is missing, forged, expired or meant for someone else."""


def fetch_key_set(jwks_uri: str, timeout: float) -> KeySet:
    try:
        response = requests.get(jwks_uri, headers={"Accept": "application/json"}, timeout=timeout)
        response.raise_for_status()
        return KeySet.import_key_set(response.json())
    except (requests.RequestException, ValueError, JoseError) as error:
        raise IdTokenError(f"the EHR's signing keys are not available ({type(error).__name__})") from None


def validate_id_token(id_token: str, keys: KeySet, *, issuer: str, client_id: str, nonce: str) -> dict:
    """The verified claims; raises ``IdTokenError`` (without the token) on any failure."""
    try:
        token = jwt.decode(id_token, keys, algorithms=ALGORITHMS)
        registry = jwt.JWTClaimsRegistry(
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": issuer},
            aud={"essential": True, "value": client_id},
            sub={"essential": True},
            exp={"essential": True},
            iat={"essential": True},
            nonce={"essential": True, "value": nonce},
        )
        registry.validate(token.claims)
    except (JoseError, ValueError) as error:
        raise IdTokenError(f"id_token refused ({type(error).__name__})") from None
    return token.claims
