"""The governance ledger: tamper-evident, with no global lock on the hook path.

``append`` writes an entry, MAC'd, on the caller's transaction (``entries``); a sealer chains
entries in the order they become visible and seals each batch (``sealing``); ``verify_database``
and ``countersign audit verify`` detect an edited, deleted, reordered or inserted entry, sealed or
not (``verification``). What is promised, and against whom: docs/DECISIONS.md, "Ledger sealing".
"""

from app.audit.ledger.entries import GENESIS_HASH, LedgerEntry, append, canonical, ledgered
from app.audit.ledger.keys import LedgerKeys, bind_keys, ledger_keys
from app.audit.ledger.sealing import LedgerSeal, Sealer, seal_now, unsealed_backlog
from app.audit.ledger.verification import (
    LedgerCheckpoint,
    Verification,
    verify_database,
    verify_from_checkpoint,
)

__all__ = [
    "GENESIS_HASH",
    "LedgerCheckpoint",
    "LedgerEntry",
    "LedgerKeys",
    "LedgerSeal",
    "Sealer",
    "Verification",
    "append",
    "bind_keys",
    "canonical",
    "ledger_keys",
    "ledgered",
    "seal_now",
    "unsealed_backlog",
    "verify_database",
    "verify_from_checkpoint",
]
