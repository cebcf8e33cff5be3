"""JWT replay protection shared by every worker: a ``jti`` is claimed once, in the database."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime, Engine, delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel

from app.db import transaction, utcnow


class SeenToken(SQLModel, table=True):
    """JWT ids already accepted, kept until they expire."""

    __tablename__ = "seen_token"

    iss: str = Field(primary_key=True)
    jti: str = Field(primary_key=True)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


class DatabaseReplayGuard:
    """Insert-or-fail on (iss, jti): the primary key makes the check atomic across processes."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def claim(self, iss: str, jti: str, expires_at: datetime) -> bool:
        try:
            with transaction(self.engine) as session:
                session.exec(delete(SeenToken).where(SeenToken.expires_at < utcnow()))
                session.add(SeenToken(iss=iss, jti=jti, expires_at=expires_at))
        except IntegrityError:
            return False
        return True
