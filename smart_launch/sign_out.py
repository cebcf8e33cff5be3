"""Ending signed-in sessions, and who is signed in (the host's ``countersign sessions``).

Every way a session ends goes through ``end``: the row goes first (a conditional delete, so of two
callers only one goes on), then, when the EHR's SMART configuration lists a ``revocation_endpoint``,
its refresh token is revoked there (RFC 7009) so that a stolen copy is worthless; otherwise it is
just dropped. A failed revocation never keeps anyone signed in: one log line, never the token.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import ColumnElement, Engine, select

from smart_launch import signals, store
from smart_launch.config import SmartConfig
from smart_launch.discovery import DiscoveryError
from smart_launch.oauth import TokenError, revoke
from smart_launch.store import SmartSession

log = logging.getLogger(__name__)
SIGN_OUT, EXPIRED, RELAUNCH = "sign-out", "expired", "relaunch"
ENDED_BY_OPERATOR, EHR_ENDED = "ended-by-operator", "ehr-ended"
#: Why a session ends; "ehr-ended" (the EHR refused its tokens or gave no refresh token) revokes nothing.
REASONS = (SIGN_OUT, EXPIRED, RELAUNCH, ENDED_BY_OPERATOR, EHR_ENDED)
LABEL_LENGTH = 12


@dataclass(frozen=True)
class SessionSummary:
    """A signed-in session as an operator sees it: no token, only a prefix of the session key."""

    label: str
    user: str | None
    role: str | None
    ehr: str | None
    created_at: datetime
    expires_at: datetime


def label(session_id: str) -> str:
    """A prefix of the session key (itself a SHA-256 of the cookie): names a session, opens none."""
    return session_id[:LABEL_LENGTH]


def end(config: SmartConfig, row: SmartSession, reason: str) -> bool:
    """Forget ``row``, revoke its refresh token and report it; False if it had already ended."""
    if not store.end_session(config.engine, row.id):
        return False
    if row.authenticated:
        if reason != EHR_ENDED:
            _revoke(config, row)
        signals.session_ended.send(
            current_app._get_current_object(),
            iss=row.iss,
            user=row.fhir_user,
            role=row.role,
            session=label(row.id),
            reason=reason,
        )
    return True


def end_expired(config: SmartConfig) -> int:
    """End the sessions whose lifetime is over but whose browser never came back."""
    return _end_each(config, SmartSession.expires_at <= store.utcnow(), EXPIRED)


def end_signed_in(config: SmartConfig, user: str | None) -> int:
    """End the signed-in sessions of ``user`` (``Practitioner/…``), or every one when None."""
    condition = SmartSession.access_token.is_not(None)
    if user is not None:
        condition = condition & (SmartSession.fhir_user == user)
    return _end_each(config, condition, ENDED_BY_OPERATOR)


def signed_in_sessions(engine: Engine) -> list[SessionSummary]:
    query = (
        select(
            SmartSession.id,
            SmartSession.fhir_user,
            SmartSession.role,
            SmartSession.iss,
            SmartSession.created_at,
            SmartSession.expires_at,
        )
        .where(SmartSession.access_token.is_not(None))
        .order_by(SmartSession.created_at)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).all()
    return [
        SessionSummary(
            label(row.id),
            row.fhir_user,
            row.role,
            row.iss,
            store.aware(row.created_at),
            store.aware(row.expires_at),
        )
        for row in rows
    ]


def _end_each(config: SmartConfig, condition: ColumnElement[bool], reason: str) -> int:
    with config.engine.connect() as connection:
        ids = connection.execute(select(SmartSession.id).where(condition)).scalars().all()
    rows = (store.load_session_by_id(config.engine, config.sealer, session_id) for session_id in ids)
    return sum(end(config, row, reason) for row in rows if row is not None)


def _revoke(config: SmartConfig, row: SmartSession) -> None:
    ehr = config.ehr(row.iss)
    if not row.refresh_token or ehr is None:
        return
    try:
        revoke(
            ehr,
            config.discovery.get(ehr.key),
            key=config.client_key(ehr),
            refresh_token=row.refresh_token,
            timeout=config.timeout,
        )
    except (DiscoveryError, TokenError) as error:
        log.warning("SMART refresh token not revoked, dropped: %s", error)
