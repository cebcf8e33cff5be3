"""JWT replay protection shared by every worker: a ``jti`` is claimed once, in the database."""

from __future__ import annotations

import time
from datetime import datetime

from sqlalchemy import Column, Connection, DateTime, Engine, delete, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from app.db import utcnow


class SeenToken(SQLModel, table=True):
    """JWT ids already accepted, kept until they expire."""

    __tablename__ = "seen_token"

    iss: str = Field(primary_key=True)
    jti: str = Field(primary_key=True)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


CLAIM = insert(SeenToken)  # built once: every authenticated call runs it


class DatabaseReplayGuard:
    """Insert-or-fail on (iss, jti): the primary key makes the check atomic across processes."""

    def __init__(self, engine: Engine, purge_interval: float = 60.0) -> None:
        self.engine = engine
        self.purge_interval = purge_interval
        self._next_purge = 0.0

    def claim(self, iss: str, jti: str, expires_at: datetime) -> bool:
        try:
            with self.engine.begin() as connection:
                self._purge_expired(connection)
                connection.execute(CLAIM, {"iss": iss, "jti": jti, "expires_at": expires_at})
        except IntegrityError:
            return False
        return True

    def _purge_expired(self, connection: Connection) -> None:
        """Expired ids can never be replayed (their tokens fail on exp): drop them now and then."""
        if time.monotonic() >= self._next_purge:
            connection.execute(delete(SeenToken).where(SeenToken.expires_at < utcnow()))
            self._next_purge = time.monotonic() + self.purge_interval
