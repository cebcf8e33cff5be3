"""The demo's trusted CDS client: an ES384 key pair kept in the instance folder.

It stands in for an EHR's signing key so the demo and integration engineers can make
authenticated hook calls without disabling authentication.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from joserfc import jwt
from joserfc.jwk import ECKey

from app.security.signing_key import ensure_signing_key
from cds_hooks.auth import TrustedClient

DEMO_ISSUER = "https://demo-ehr.countersign.local"
DEMO_KID = "demo-ehr-es384"


def ensure_key(directory: Path, filename: str = "demo-client-es384.pem") -> Path:
    """Create a client's private key once; later runs reuse it so issued tokens stay valid."""
    return ensure_signing_key(directory / filename)


def public_jwks(key_path: Path, kid: str = DEMO_KID) -> dict:
    key = ECKey.import_key(key_path.read_bytes())
    return {"keys": [key.as_dict(private=False, kid=kid, alg="ES384", use="sig")]}


def trusted_client(key_path: Path) -> TrustedClient:
    return TrustedClient(iss=DEMO_ISSUER, jwks=public_jwks(key_path))


def client_token(
    key_path: Path, audience: str, lifetime: int = 300, issuer: str = DEMO_ISSUER, kid: str = DEMO_KID
) -> str:
    """A fresh JWT for one call to ``audience``, as a CDS client signs it (spec §3.2)."""
    now = int(time.time())
    claims = {
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + lifetime,
        "jti": str(uuid.uuid4()),
    }
    header = {"alg": "ES384", "kid": kid, "typ": "JWT"}
    return jwt.encode(header, claims, ECKey.import_key(key_path.read_bytes()), algorithms=["ES384"])
