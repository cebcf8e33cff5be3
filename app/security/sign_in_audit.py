"""Sign-in audit: SMART sign-ins, refused sign-ins, sign-outs and other session ends.

``smart_launch`` announces them on ``smart_launch.signals`` and knows nothing of the ledger; each
is recorded here in one transaction: a ``sign_in_event`` row, its ledger entry, and the outbox
message that writes it back as a user-authentication AuditEvent (login / logout). Nothing kept is
a secret: no token, code or state, only a prefix of the session key and a refusal's class. A
refusal whose EHR is unknown (no authorization in flight matched) is kept in the ledger only.
"""

from __future__ import annotations

from datetime import datetime

from flask import Flask
from sqlalchemy import Column, DateTime, insert
from sqlmodel import Field, SQLModel

from app.audit import ledger, outbox
from app.db import DATABASE_KEY, utcnow
from app.settings import Settings
from smart_launch import signals
from smart_launch.sign_out import SIGN_OUT

LOGIN, LOGOUT = "login", "logout"


@ledger.ledgered
class SignInEvent(SQLModel, table=True):
    """One sign-in (``login``, possibly refused) or session end (``logout``)."""

    __tablename__ = "sign_in_event"

    id: int | None = Field(default=None, primary_key=True)
    action: str
    refused: bool = False
    reason: str | None = None
    fhir_user: str | None = None
    role: str | None = None
    ehr: str | None = None
    session: str | None = None
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


def init_app(app: Flask) -> None:
    signals.signed_in.connect(_signed_in, sender=app)
    signals.sign_in_refused.connect(_sign_in_refused, sender=app)
    signals.session_ended.connect(_session_ended, sender=app)


def _signed_in(app: Flask, *, iss: str, user: str | None, role: str | None, session: str) -> None:
    _record(app, "sign-in", _session_facts(iss, user, role, session) | {"action": LOGIN})


def _sign_in_refused(app: Flask, *, iss: str | None, reason: str) -> None:
    _record(app, "sign-in-refused", {"action": LOGIN, "refused": True, "reason": reason, "ehr": iss})


def _session_ended(
    app: Flask, *, iss: str | None, user: str | None, role: str | None, session: str, reason: str
) -> None:
    kind = "sign-out" if reason == SIGN_OUT else "session-ended"
    _record(app, kind, _session_facts(iss, user, role, session) | {"action": LOGOUT, "reason": reason})


def _session_facts(iss: str | None, user: str | None, role: str | None, session: str) -> dict:
    return {"ehr": iss, "fhir_user": user, "role": role, "session": session}


def _record(app: Flask, kind: str, facts: dict) -> None:
    event = {"refused": False, "reason": None, "fhir_user": None, "role": None, "session": None}
    event |= facts | {"occurred_at": utcnow()}
    with app.extensions[DATABASE_KEY].begin() as connection:
        event_id = connection.execute(insert(SignInEvent).returning(SignInEvent.id), event).scalar_one()
        ledger.append(
            connection,
            kind,
            {"sign_in_event": event_id} | event | {"occurred_at": event["occurred_at"].isoformat()},
            about=(SignInEvent, event_id),
        )
        target = _writeback_target(app.config["COUNTERSIGN"], event["ehr"])
        if target is not None:
            outbox.enqueue(connection, outbox.USER_AUTHENTICATION, event_id, target)


def _writeback_target(settings: Settings, ehr: str | None) -> str | None:
    """The EHR's own write-back server when one is configured for its FHIR base, else the default;
    None when the EHR is unknown."""
    if ehr is None:
        return None
    return settings.writeback_target(ehr) or settings.writeback_target(None)
