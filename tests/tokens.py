"""A signed JWT checked as the service receiving it would: one algorithm, its audience, not expired."""

from __future__ import annotations

from joserfc import jwt
from joserfc.jwk import Key


def verified(token: str, key: Key, algorithm: str, audience: str) -> jwt.Token:
    """The token's header and claims; raises ``joserfc.errors.JoseError`` if any check fails."""
    decoded = jwt.decode(token, key, algorithms=[algorithm])
    registry = jwt.JWTClaimsRegistry(aud={"essential": True, "value": audience}, exp={"essential": True})
    registry.validate(decoded.claims)
    return decoded
