"""Server-side SMART state: browser sessions (with their tokens) and pending authorizations.

The browser only ever holds an opaque random session id; rows are keyed by its SHA-256, so a
copy of the database does not hand out live sessions. Tokens never leave this table.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import JSON, Column, DateTime, Engine, delete, select, update
from sqlmodel import Field, Session, SQLModel

PENDING_TTL = timedelta(minutes=10)


class SmartSession(SQLModel, table=True):
    """One browser session; the token columns are filled once an authorization succeeds."""

    __tablename__ = "smart_session"

    id: str = Field(primary_key=True)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    csrf_token: str
    embedded: bool = False
    iss: str | None = None
    access_token: str | None = None
    refresh_token: str | None = None
    token_expires_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    refresh_lease_until: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))
    scope: str | None = None
    sub: str | None = None
    fhir_user: str | None = None
    role: str | None = None
    context: dict = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))

    @property
    def authenticated(self) -> bool:
        return self.access_token is not None


class PendingAuthorization(SQLModel, table=True):
    """One authorize request in flight: single use, bound to the session that started it."""

    __tablename__ = "smart_pending_auth"

    state: str = Field(primary_key=True)
    session_id: str = Field(index=True)
    iss: str
    launch: str | None = None
    code_verifier: str
    nonce: str
    embedded: bool = False
    started: bool = False
    rebound: bool = False
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


def session_key(cookie_value: str) -> str:
    return hashlib.sha256(cookie_value.encode()).hexdigest()


def new_session(engine: Engine, lifetime_seconds: int, *, embedded: bool) -> tuple[str, SmartSession]:
    """A fresh anonymous session; returns the cookie value (shown once) and the row."""
    cookie = secrets.token_urlsafe(32)
    now = utcnow()
    row = SmartSession(
        id=session_key(cookie),
        created_at=now,
        expires_at=now + timedelta(seconds=lifetime_seconds),
        csrf_token=secrets.token_urlsafe(32),
        embedded=embedded,
    )
    with Session(engine, expire_on_commit=False) as session:
        session.add(row)
        session.commit()
    return cookie, row


def load_session(engine: Engine, cookie_value: str | None) -> SmartSession | None:
    if not cookie_value:
        return None
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(SmartSession, session_key(cookie_value))
    if row is None or aware(row.expires_at) <= utcnow():
        return None
    return row


def load_session_by_id(engine: Engine, session_id: str) -> SmartSession | None:
    with Session(engine, expire_on_commit=False) as session:
        return session.get(SmartSession, session_id)


def save_session(engine: Engine, row: SmartSession) -> None:
    with Session(engine, expire_on_commit=False) as session:
        session.merge(row)
        session.commit()


def end_session(engine: Engine, session_id: str) -> None:
    """Forget the session and its tokens (logout, refresh failure, expiry)."""
    with engine.begin() as connection:
        connection.execute(delete(PendingAuthorization).where(PendingAuthorization.session_id == session_id))
        connection.execute(delete(SmartSession).where(SmartSession.id == session_id))


def add_pending(engine: Engine, pending: PendingAuthorization) -> None:
    with Session(engine) as session:
        session.add(pending)
        session.commit()


def pending_for_start(engine: Engine, state: str) -> PendingAuthorization | None:
    """The pending authorization that has not yet been sent to the EHR, if still fresh."""
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(PendingAuthorization, state)
    if row is None or row.started or aware(row.created_at) + PENDING_TTL <= utcnow():
        return None
    return row


def mark_started(engine: Engine, state: str, session_id: str) -> bool:
    with engine.begin() as connection:
        result = connection.execute(
            update(PendingAuthorization)
            .where(
                PendingAuthorization.state == state,
                PendingAuthorization.session_id == session_id,
                PendingAuthorization.started.is_(False),
            )
            .values(started=True)
        )
    return result.rowcount == 1


def rebind_once(engine: Engine, state: str, session_id: str) -> bool:
    """Move an unstarted authorization to a new top-level window's session, once (cookie fallback)."""
    with engine.begin() as connection:
        result = connection.execute(
            update(PendingAuthorization)
            .where(
                PendingAuthorization.state == state,
                PendingAuthorization.started.is_(False),
                PendingAuthorization.rebound.is_(False),
            )
            .values(session_id=session_id, rebound=True, embedded=False)
        )
    return result.rowcount == 1


def consume_pending(engine: Engine, state: str, session_id: str) -> PendingAuthorization | None:
    """Take the started authorization for ``state`` if it belongs to this session; at most once."""
    with engine.begin() as connection:
        row = connection.execute(
            select(PendingAuthorization).where(
                PendingAuthorization.state == state,
                PendingAuthorization.session_id == session_id,
                PendingAuthorization.started.is_(True),
            )
        ).first()
        if row is None:
            return None
        deleted = connection.execute(
            delete(PendingAuthorization).where(PendingAuthorization.state == state)
        ).rowcount
    pending = PendingAuthorization.model_validate(row._mapping)
    if deleted != 1 or aware(pending.created_at) + PENDING_TTL <= utcnow():
        return None
    return pending


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time we store is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
