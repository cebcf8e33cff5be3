"""The key that signs every Provenance Countersign writes; without a usable one Countersign does not start.

``COUNTERSIGN_SIGNING_KEY_PATH`` names a PEM private key, EC P-384 (ES384) or RSA of at least 2048
bits (RS384); ``COUNTERSIGN_SIGNING_KEY_ID`` its ``kid``, by default its RFC 7638 thumbprint. A
Provenance written unsigned could not be told from a forged one, so a missing or unusable key is a
configuration error. The demo and the tests make one (``ensure_signing_key``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from flask.cli import NoAppException
from joserfc.jwk import ECKey, KeySet, RSAKey

from app.settings import Settings
from fhir_profiles.signature import ALGORITHMS, SigningKey

SETTING = "COUNTERSIGN_SIGNING_KEY_PATH"
MIN_RSA_BITS = 2048
MISSING = (
    f"{SETTING} is not set: Countersign signs every Provenance it writes and needs a private key "
    "(PEM, EC P-384 or RSA of 2048 bits or more), e.g. "
    "`openssl ecparam -name secp384r1 -genkey -noout -out signing-key.pem`."
)


class SigningKeyUnusable(NoAppException):
    """No app can be built: every ``countersign`` command says why in one line, naming the setting."""


@dataclass(frozen=True)
class ProvenanceKey:
    key: SigningKey
    kid: str

    def public_jwk(self) -> dict:
        algorithm = ALGORITHMS[self.key.key_type]
        return self.key.as_dict(private=False, kid=self.kid, alg=algorithm, use="sig")

    def key_set(self) -> KeySet:
        """The public key alone: what a verifier holds."""
        return KeySet.import_key_set({"keys": [self.public_jwk()]})


def signing_key(settings: Settings) -> ProvenanceKey:
    path = settings.signing_key_path
    if path is None:
        raise SigningKeyUnusable(MISSING)
    try:
        key = _import(path.read_bytes())
    except OSError as error:
        raise SigningKeyUnusable(f"{SETTING}: cannot read {path} ({error.strerror})") from None
    except ValueError as error:
        raise SigningKeyUnusable(f"{SETTING}: {path} {error}") from None
    return ProvenanceKey(key, settings.signing_key_id or key.thumbprint())


def _import(pem: bytes) -> SigningKey:
    try:
        private = load_pem_private_key(pem, password=None)
    except (TypeError, ValueError):
        raise ValueError("is not an unencrypted PEM private key") from None
    if isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP384R1):
        return ECKey.import_key(private)
    if isinstance(private, rsa.RSAPrivateKey) and private.key_size >= MIN_RSA_BITS:
        return RSAKey.import_key(private)
    raise ValueError(f"is neither an EC P-384 key nor an RSA key of at least {MIN_RSA_BITS} bits")


def ensure_signing_key(path: Path) -> Path:
    """A fresh EC P-384 key at ``path`` unless one is there: the demo's and the tests'."""
    if not path.exists():
        write_private(path, ECKey.generate_key("P-384").as_pem(private=True))
    return path


def write_private(path: Path, content: bytes) -> None:
    """A new file only its owner can read, from its first byte (created 0600, never chmod-ed after)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as file:
        file.write(content)
