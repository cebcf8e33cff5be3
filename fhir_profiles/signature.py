"""The signature on every Provenance Countersign writes (reference §1(c); docs/DECISIONS.md).

What is signed is the Provenance as the server holds it, less what the server assigns (``id``,
``meta``) and the ``signature`` itself, in canonical JSON (RFC 8785 JCS): a server that reorders
members or spells a number differently changes nothing, so a Provenance read back verifies. A
reference to one version of a resource is signed as the reference to the resource: servers may
keep the version or drop it (HAPI FHIR drops it by default). The signature is a detached JWS
(RFC 7515 Appendix F: ``header..signature``), ES384 or RS384, whose header names the key by
``kid``; ``Signature.data`` is that JWS in base64.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import rfc8785
from joserfc import jws
from joserfc.errors import BadSignatureError, InvalidKeyIdError, JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from fhir_profiles.common import instant

JOSE = "application/jose"
#: The JWS algorithm of each key type: SHA-384 either way.
ALGORITHMS = {"EC": "ES384", "RSA": "RS384"}
#: What the server assigns, and the signature itself: never part of what is signed.
NOT_SIGNED = frozenset({"id", "meta", "signature"})
VERIFICATION_SIGNATURE = {
    "system": "urn:iso-astm:E1762-95:2013",
    "code": "1.2.840.10065.1.12.1.5",
    "display": "Verification Signature",
}

VERSION = re.compile(r"/_history/[^/]+$")

SigningKey = ECKey | RSAKey
Status = Literal["valid", "invalid", "unsigned"]


class InvalidSignature(Exception):
    """A JWS that does not sign the content with a key of the key set; the message says why."""


@dataclass(frozen=True)
class Verdict:
    """A Provenance's signature checked: ``reason`` says why it is invalid (never any content)."""

    status: Status
    reason: str = ""


def canonical(value: object) -> bytes:
    """RFC 8785: members sorted by UTF-16 code units, ECMAScript numbers, minimal escapes, UTF-8."""
    return rfc8785.dumps(value)


def signed_content(provenance: dict) -> bytes:
    signed_part = {name: value for name, value in provenance.items() if name not in NOT_SIGNED}
    return canonical(_unversioned(signed_part))


def sign_detached(payload: bytes, key: SigningKey, kid: str) -> str:
    """A compact JWS over ``payload`` with the payload part left empty (RFC 7515 Appendix F)."""
    algorithm = ALGORITHMS[key.key_type]
    token = jws.serialize_compact({"alg": algorithm, "kid": kid}, payload, key, algorithms=[algorithm])
    header, _, signature = token.split(".")
    return f"{header}..{signature}"


def verify_detached(token: str, payload: bytes, keys: KeySet) -> None:
    """Raises InvalidSignature unless ``token`` signs ``payload`` with the key its ``kid`` names."""
    try:
        jws.deserialize_compact(token, keys, algorithms=list(ALGORITHMS.values()), payload=payload)
    except InvalidKeyIdError:
        raise InvalidSignature("signed with a key not in the key set") from None
    except BadSignatureError:
        raise InvalidSignature("the content does not match its signature") from None
    except (JoseError, ValueError):
        raise InvalidSignature("malformed signature") from None


def signed(provenance: dict, key: SigningKey, kid: str, signer_ref: str, when: datetime) -> dict:
    """The Provenance with its one signature, by ``signer_ref`` (the Device that Countersign is)."""
    token = sign_detached(signed_content(provenance), key, kid)
    signature = {
        "type": [dict(VERIFICATION_SIGNATURE)],
        "when": instant(when),
        "who": {"reference": signer_ref},
        "targetFormat": "application/fhir+json",
        "sigFormat": JOSE,
        "data": base64.b64encode(token.encode()).decode(),
    }
    return {**provenance, "signature": [signature]}


def verify(provenance: dict, keys: KeySet) -> Verdict:
    """Valid when every JOSE signature on it verifies; unsigned when it has none."""
    jose = [s for s in provenance.get("signature", []) if s.get("sigFormat") == JOSE and s.get("data")]
    if not jose:
        return Verdict("unsigned")
    content = signed_content(provenance)
    try:
        for signature in jose:
            verify_detached(_token(signature["data"]), content, keys)
    except InvalidSignature as error:
        return Verdict("invalid", str(error))
    return Verdict("valid")


def _unversioned(value: object) -> object:
    if isinstance(value, list):
        return [_unversioned(item) for item in value]
    if isinstance(value, dict):
        return {
            key: VERSION.sub("", item) if key == "reference" and isinstance(item, str) else _unversioned(item)
            for key, item in value.items()
        }
    return value


def _token(data: str) -> str:
    try:
        return base64.b64decode(data, validate=True).decode("ascii")
    except (binascii.Error, TypeError, UnicodeDecodeError):
        raise InvalidSignature("malformed signature") from None
