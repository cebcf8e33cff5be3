"""Server-side SMART state: browser sessions (with their tokens) and pending authorizations.

The browser only ever holds an opaque random session id; rows are keyed by its SHA-256, so a
copy of the database does not hand out live sessions. Tokens never leave this table, and are
sealed there (``SEALED``): in memory a row holds them in the clear, in the database only sealed,
each bound to its row. A session whose tokens no configured key opens is ended (the user relaunches).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from sqlalchemy import JSON, Column, DateTime, Engine, delete, select, update
from sqlmodel import Field, Session, SQLModel

from smart_launch.sealing import Sealer, Unsealable

log = logging.getLogger(__name__)
Row = TypeVar("Row", bound=SQLModel)
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


@dataclass(frozen=True)
class SealedColumn:
    """A column that holds a secret; its associated data names the table, the column and the row."""

    table: type[SQLModel]
    key: str
    name: str

    def aad(self, key: str) -> str:
        return f"{self.table.__tablename__}.{self.name}.{key}"


REFRESH_TOKEN = SealedColumn(SmartSession, "id", "refresh_token")
SEALED = (
    SealedColumn(SmartSession, "id", "access_token"),
    REFRESH_TOKEN,
    SealedColumn(PendingAuthorization, "state", "code_verifier"),
)


def _sealed_columns(row: SQLModel) -> list[SealedColumn]:
    return [column for column in SEALED if isinstance(row, column.table)]


def _opened(row: Row, sealer: Sealer) -> Row:
    """Open ``row``'s secrets in place (a detached row); raises Unsealable."""
    for column in _sealed_columns(row):
        value = getattr(row, column.name)
        if value is not None:
            setattr(row, column.name, sealer.open(value, column.aad(getattr(row, column.key))))
    return row


def _write(engine: Engine, row: SQLModel, sealer: Sealer) -> None:
    """Insert or update ``row`` with its secrets sealed; ``row`` itself keeps them in the clear."""
    with Session(engine, expire_on_commit=False) as session:
        stored = session.merge(row)
        for column in _sealed_columns(row):
            value = getattr(row, column.name)
            sealed = None if value is None else sealer.seal(value, column.aad(getattr(row, column.key)))
            setattr(stored, column.name, sealed)
        session.commit()


def _open_session(engine: Engine, sealer: Sealer, row: SmartSession) -> SmartSession | None:
    try:
        return _opened(row, sealer)
    except Unsealable:
        log.warning("SMART session ended: no configured data key opens its stored tokens")
        end_session(engine, row.id)
        return None


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


def load_session(engine: Engine, sealer: Sealer, cookie_value: str | None) -> SmartSession | None:
    if not cookie_value:
        return None
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(SmartSession, session_key(cookie_value))
    if row is None or aware(row.expires_at) <= utcnow():
        return None
    return _open_session(engine, sealer, row)


def load_session_by_id(engine: Engine, sealer: Sealer, session_id: str) -> SmartSession | None:
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(SmartSession, session_id)
    return None if row is None else _open_session(engine, sealer, row)


def save_session(engine: Engine, sealer: Sealer, row: SmartSession) -> None:
    _write(engine, row, sealer)


def sealed_refresh_token(engine: Engine, sealer: Sealer, row: SmartSession) -> str | None:
    """The stored (sealed) refresh token if it still opens to ``row``'s, for a compare-and-set in
    SQL: sealing is randomised, so the clear token cannot be compared there."""
    with engine.connect() as connection:
        stored = connection.execute(
            select(SmartSession.refresh_token).where(SmartSession.id == row.id)
        ).scalar()
    try:
        same = stored is not None and sealer.open(stored, REFRESH_TOKEN.aad(row.id)) == row.refresh_token
    except Unsealable:
        return None
    return stored if same else None


def end_session(engine: Engine, session_id: str) -> bool:
    """Forget the session and its tokens (logout, refresh failure, expiry); True if this call did,
    so of two workers ending one session only one revokes and reports it."""
    with engine.begin() as connection:
        connection.execute(delete(PendingAuthorization).where(PendingAuthorization.session_id == session_id))
        return connection.execute(delete(SmartSession).where(SmartSession.id == session_id)).rowcount == 1


def add_pending(engine: Engine, sealer: Sealer, pending: PendingAuthorization) -> None:
    _write(engine, pending, sealer)


def pending_for_start(engine: Engine, sealer: Sealer, state: str) -> PendingAuthorization | None:
    """The pending authorization that has not yet been sent to the EHR, if still fresh."""
    with Session(engine, expire_on_commit=False) as session:
        row = session.get(PendingAuthorization, state)
    if row is None or row.started or aware(row.created_at) + PENDING_TTL <= utcnow():
        return None
    return _open_pending(row, sealer)


def _open_pending(row: PendingAuthorization, sealer: Sealer) -> PendingAuthorization | None:
    try:
        return _opened(row, sealer)
    except Unsealable:
        log.warning("SMART sign-in refused: no configured data key opens its stored PKCE verifier")
        return None


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


def consume_pending(
    engine: Engine, sealer: Sealer, state: str, session_id: str
) -> PendingAuthorization | None:
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
    return _open_pending(pending, sealer)


def utcnow() -> datetime:
    return datetime.now(UTC)


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time we store is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
