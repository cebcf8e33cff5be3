"""Re-sealing every stored secret under the first data key (the host's ``keys rotate`` command).

Each value is replaced by a compare-and-set on its old sealed form, so a sign-in or a refresh
that races the rotation keeps its own, newer value. A value that no configured key opens ends
its row, as any read of it would: the user launches again. Running it twice changes nothing more.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum

from sqlalchemy import Engine, delete, func, select, update
from sqlalchemy.orm import InstrumentedAttribute

from smart_launch.sealing import Sealer, Unsealable
from smart_launch.store import SEALED, SealedColumn


class Outcome(StrEnum):
    RESEALED = "re-sealed"
    CURRENT = "already under the first key"
    ENDED = "ended (no configured key opens it)"
    CHANGED = "changed meanwhile (run again)"


def count(engine: Engine) -> int:
    """How many secrets are stored, for a progress bar."""
    with engine.connect() as connection:
        return sum(
            connection.execute(
                select(func.count()).select_from(sealed.table).where(_column(sealed).is_not(None))
            ).scalar_one()
            for sealed in SEALED
        )


def reseal(engine: Engine, sealer: Sealer) -> Iterator[Outcome]:
    """Re-seal each stored secret not yet under the first key; one outcome per secret."""
    for sealed in SEALED:
        for key, value in _stored(engine, sealed):
            yield _reseal_one(engine, sealer, sealed, key, value)


def _reseal_one(engine: Engine, sealer: Sealer, sealed: SealedColumn, key: str, value: str) -> Outcome:
    if sealer.is_current(value):
        return Outcome.CURRENT
    row = _column(sealed, sealed.key) == key
    same = _column(sealed) == value
    try:
        fresh = sealer.seal(sealer.open(value, sealed.aad(key)), sealed.aad(key))
    except Unsealable:
        with engine.begin() as connection:
            gone = connection.execute(delete(sealed.table).where(row, same)).rowcount
        return Outcome.ENDED if gone else Outcome.CHANGED
    with engine.begin() as connection:
        swapped = connection.execute(
            update(sealed.table).where(row, same).values({sealed.name: fresh})
        ).rowcount
    return Outcome.RESEALED if swapped else Outcome.CHANGED


def _stored(engine: Engine, sealed: SealedColumn) -> list[tuple[str, str]]:
    query = select(_column(sealed, sealed.key), _column(sealed)).where(_column(sealed).is_not(None))
    with engine.connect() as connection:
        return [(key, value) for key, value in connection.execute(query)]


def _column(sealed: SealedColumn, name: str | None = None) -> InstrumentedAttribute:
    return getattr(sealed.table, name or sealed.name)
