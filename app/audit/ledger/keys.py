"""The keys that MAC ledger entries, seals and the verify checkpoint (``COUNTERSIGN_LEDGER_KEYS``).

The first key MACs what is written now; every key listed verifies what was written before, so a
key is added, never dropped while the entries it MAC'd are kept. The keys are bound to the
engine they are used with (``create_app`` binds them), so ``append`` keeps its signature. Without
a key the MAC falls back to a public one, ``none``: entries are still hashed and chained, but a
forger with database access can compute such a MAC too (docs/DECISIONS.md, "Ledger sealing").
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from app.settings import Settings
from smart_launch.sealing import decode_key, key_id

UNKEYED = "none"
LABEL = b"countersign ledger key id"
log = logging.getLogger(__name__)
_BOUND: weakref.WeakKeyDictionary[Engine, LedgerKeys] = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class LedgerKeys:
    """``current`` MACs new entries and seals; ``secrets`` (``none`` included) verify old ones."""

    current: str
    secrets: Mapping[str, bytes]

    @classmethod
    def of(cls, keys: Sequence[bytes]) -> LedgerKeys:
        secrets = {UNKEYED: b""} | {key_id(key, LABEL): key for key in keys}
        return cls(key_id(keys[0], LABEL) if keys else UNKEYED, secrets)

    @property
    def keyed(self) -> bool:
        return self.current != UNKEYED

    def mac(self, purpose: bytes, data: bytes, kid: str | None = None) -> str | None:
        """HMAC-SHA256 under key ``kid`` (default: the current one); None for an unknown key."""
        secret = self.secrets.get(kid or self.current)
        if secret is None:
            return None
        return hmac.new(secret, purpose + b"\0" + data, hashlib.sha256).hexdigest()

    def matches(self, purpose: bytes, data: bytes, kid: str, mac: str | None) -> bool:
        expected = self.mac(purpose, data, kid)
        return expected is not None and mac is not None and hmac.compare_digest(expected, mac)


def ledger_keys(settings: Settings) -> LedgerKeys:
    keys = LedgerKeys.of([decode_key(key.get_secret_value()) for key in settings.ledger_keys])
    if not keys.keyed:
        log.warning(
            "COUNTERSIGN_LEDGER_KEYS is not set: ledger entries are hashed and chained but not MAC'd, "
            "so anyone who can write to the database can forge an entry that verifies"
        )
    return keys


def bind_keys(engine: Engine, keys: LedgerKeys) -> None:
    _BOUND[engine] = keys


def keys_for(engine: Engine) -> LedgerKeys:
    """The keys bound to ``engine``; refusing rather than writing an entry no verifier could check."""
    try:
        return _BOUND[engine]
    except KeyError:
        raise LookupError("no ledger keys are bound to this engine (create_app binds them)") from None
