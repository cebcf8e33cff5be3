"""JWT replay protection shared by every worker: a ``jti`` is claimed once, in the database."""

from __future__ import annotations

import time
from datetime import datetime

from sqlalchemy import Column, Connection, DateTime, delete, insert
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from app.db import utcnow
from cds_hooks.auth import VerifiedClient
from cds_hooks.backend import ReplayedToken


class SeenToken(SQLModel, table=True):
    """JWT ids already accepted, kept until they expire."""

    __tablename__ = "seen_token"

    iss: str = Field(primary_key=True)
    jti: str = Field(primary_key=True)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


CLAIM = insert(SeenToken)  # built once: every authenticated call runs it


class DatabaseReplayGuard:
    """Insert-or-fail on (iss, jti): the primary key makes the check atomic across processes."""

    def __init__(self, purge_interval: float = 60.0) -> None:
        self.purge_interval = purge_interval
        self._next_purge = 0.0

    def spend(self, connection: Connection, client: VerifiedClient) -> None:
        """On the caller's transaction, which must be abandoned when this raises ReplayedToken.

        The insert comes first in that transaction, so a replay fails before anything is written.
        """
        self._purge_expired(connection)
        row = {"iss": client.iss, "jti": client.jti, "expires_at": client.expires_at}
        try:
            connection.execute(CLAIM, row)
        except IntegrityError:
            raise ReplayedToken(client.jti) from None

    def _purge_expired(self, connection: Connection) -> None:
        """Expired ids can never be replayed (their tokens fail on exp): drop them now and then."""
        if time.monotonic() >= self._next_purge:
            connection.execute(delete(SeenToken).where(SeenToken.expires_at < utcnow()))
            self._next_purge = time.monotonic() + self.purge_interval
