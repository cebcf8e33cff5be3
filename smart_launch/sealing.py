"""Secrets sealed at rest: AES-256-GCM under a list of data keys, each value bound to its row.

A sealed value reads ``v1.<key id>.<base64url(nonce | ciphertext | tag)>``. The key id (derived
from the key, not secret) picks the key that opens it, so keys can be added and retired without
trial decryption. The associated data names the table, column and row the value was written for:
a value copied into another row does not open there.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{43}=?")


class Unsealable(Exception):
    """No configured key opens the value: its key is gone, it belongs to another row, or it was altered."""


def generate_key() -> str:
    """A fresh data key, base64url without padding."""
    return _encode(os.urandom(KEY_BYTES))


def decode_key(text: str) -> bytes:
    """The 32 bytes of a base64url key; ValueError (not naming the key) for anything else."""
    if not KEY_PATTERN.fullmatch(text):
        raise ValueError(f"a data key is {KEY_BYTES} bytes in base64url (43 characters)")
    return base64.urlsafe_b64decode(text.rstrip("=") + "=")


def key_id(key: bytes, label: bytes = b"countersign data key id") -> str:
    """A short public name for a key: a hash of it (under ``label``, one per use of keys), so nothing
    of the key can be read back."""
    return _encode(hashlib.sha256(label + b"\0" + key).digest()[:6])


class Sealer:
    """Seals with the first key; opens with whichever configured key the value names."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise ValueError("at least one data key is needed")
        raw = [decode_key(key) for key in keys]
        self.current_id = key_id(raw[0])
        self._ciphers = {key_id(key): AESGCM(key) for key in raw}

    def seal(self, plaintext: str, aad: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.current_id].encrypt(nonce, plaintext.encode(), aad.encode())
        return f"{VERSION}.{self.current_id}.{_encode(nonce + sealed)}"

    def open(self, value: str, aad: str) -> str:
        version, _, rest = value.partition(".")
        kid, _, payload = rest.partition(".")
        cipher = self._ciphers.get(kid) if version == VERSION else None
        if cipher is None:
            raise Unsealable("sealed with no configured key")
        try:
            raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
            return cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], aad.encode()).decode()
        except (InvalidTag, ValueError) as error:
            raise Unsealable("altered, or sealed for another row") from error

    def is_current(self, value: str) -> bool:
        """Sealed under the first key already (rotation skips it)."""
        return value.startswith(f"{VERSION}.{self.current_id}.")


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
