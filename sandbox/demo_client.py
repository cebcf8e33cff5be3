"""The demo's trusted CDS client: an ES384 key pair kept in the instance folder.

It stands in for an EHR's signing key so the demo and integration engineers can make
authenticated hook calls without disabling authentication.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cds_hooks.auth import TrustedClient

DEMO_ISSUER = "https://demo-ehr.countersign.local"
DEMO_KID = "demo-ehr-es384"


def ensure_key(directory: Path, filename: str = "demo-client-es384.pem") -> Path:
    """Create a client's private key once; later runs reuse it so issued tokens stay valid."""
    path = directory / filename
    if not path.exists():
        directory.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP384R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.write_bytes(pem)
        path.chmod(0o600)
    return path


def public_jwks(key_path: Path, kid: str = DEMO_KID) -> dict:
    private_key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private_key.public_key()))
    return {"keys": [jwk | {"kid": kid, "alg": "ES384", "use": "sig"}]}


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
    headers = {"kid": kid, "typ": "JWT"}
    return jwt.encode(claims, key_path.read_bytes(), algorithm="ES384", headers=headers)
