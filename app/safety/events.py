"""Reporting an AI-associated safety event against the card that preceded it.

The report is tied to an issued card, so the model version, patient and the time the card was
shown come from the record, not from the reporter; time to detect is then exact. It is ledgered
and written back to the EHR as an AdverseEvent naming the AI Device as the suspect entity.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Column, DateTime, Engine, insert, select
from sqlmodel import Field, SQLModel

from app.audit import ledger, outbox
from app.audit.tables import CardSet, IssuedCard
from app.db import as_utc, utcnow

SEVERITIES = ("mild", "moderate", "severe")
# R4 AdverseEvent category codes that fit harm following decision support.
CATEGORIES = ("product-problem", "product-use-error", "wrong-dose", "incorrect-prescribing-information")
REPORTER = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")


@ledger.ledgered
class SafetyEvent(SQLModel, table=True):
    __tablename__ = "safety_event"

    id: int | None = Field(default=None, primary_key=True)
    card_uuid: str = Field(foreign_key="issued_card.uuid", index=True)
    model_id: str = Field(index=True)
    model_version: str
    patient_id: str
    encounter_id: str | None = None
    category: str
    severity: str
    description: str
    reporter: str
    card_shown_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    occurred_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    detected_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False, index=True))


class ReportRefused(ValueError):
    """The report cannot be recorded; the message names the field, never the patient."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def report_safety_event(
    engine: Engine,
    *,
    card_uuid: str,
    category: str,
    severity: str,
    description: str,
    reporter: str,
    occurred_at: datetime,
    writeback_target: Callable[[str | None], str | None],
) -> SafetyEvent:
    """``writeback_target`` maps the card's FHIR server to where the AdverseEvent goes (or None)."""
    _check(category, severity, description, reporter, occurred_at)
    with engine.begin() as connection:
        found = connection.execute(
            select(
                IssuedCard.uuid,
                CardSet.model_id,
                CardSet.model_version,
                CardSet.patient_id,
                CardSet.encounter_id,
                CardSet.created_at,
                CardSet.fhir_server,
            )
            .join(CardSet, CardSet.id == IssuedCard.card_set_id)
            .where(IssuedCard.uuid == card_uuid)
        ).first()
        if found is None:
            raise ReportRefused("card", "no card with this uuid was issued")
        if occurred_at < as_utc(found.created_at):
            raise ReportRefused("occurred", "the event cannot precede the card it is reported against")
        event = {
            "card_uuid": card_uuid,
            "model_id": found.model_id,
            "model_version": found.model_version,
            "patient_id": found.patient_id,
            "encounter_id": found.encounter_id,
            "category": category,
            "severity": severity,
            "description": description.strip(),
            "reporter": reporter,
            "card_shown_at": as_utc(found.created_at),
            "occurred_at": occurred_at,
            "detected_at": utcnow(),
        }
        event_id = connection.execute(insert(SafetyEvent).returning(SafetyEvent.id), event).scalar_one()
        ledger.append(
            connection,
            "safety-event-reported",
            _ledger_content(event_id, event),
            about=(SafetyEvent, event_id),
        )
        target = writeback_target(found.fhir_server)
        if target is not None:
            outbox.enqueue(connection, outbox.SAFETY_EVENT, event_id, target)
    return SafetyEvent(id=event_id, **event)


def _check(category: str, severity: str, description: str, reporter: str, occurred_at: datetime) -> None:
    if category not in CATEGORIES:
        raise ReportRefused("category", f"one of {', '.join(CATEGORIES)}")
    if severity not in SEVERITIES:
        raise ReportRefused("severity", f"one of {', '.join(SEVERITIES)}")
    if not description.strip() or len(description) > 4000:
        raise ReportRefused("description", "required, at most 4000 characters")
    if not REPORTER.match(reporter):
        raise ReportRefused("reporter", "a Practitioner or PractitionerRole reference")
    if occurred_at.tzinfo is None or occurred_at > utcnow():
        raise ReportRefused("occurred", "a past date-time with a time zone")


def _ledger_content(event_id: int, event: dict) -> dict:
    """The ledger keeps references and times; the free-text description stays in its table only."""
    return {
        "safety_event": event_id,
        "card": event["card_uuid"],
        "model": f"{event['model_id']}-{event['model_version']}",
        "patient": f"Patient/{event['patient_id']}",
        "category": event["category"],
        "severity": event["severity"],
        "reporter": event["reporter"],
        "occurred_at": event["occurred_at"].isoformat(),
        "detected_at": event["detected_at"].isoformat(),
    }
