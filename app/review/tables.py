"""Who reviewed a held draft, and what they signed: the edited text waits here for the outbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, DateTime
from sqlmodel import Field, SQLModel

from app.audit.ledger import ledgered


@ledgered
class ReviewDecision(SQLModel, table=True):
    """One review of one held card: signed (with the clinician's text) or rejected (no text).

    CDS Hooks feedback names no user, so the reviewer is kept here beside the ``card_decision``.
    """

    __tablename__ = "review_decision"

    id: int | None = Field(default=None, primary_key=True)
    card_uuid: str = Field(foreign_key="issued_card.uuid", unique=True)
    decision_id: int = Field(foreign_key="card_decision.id")
    outcome: str
    suggestion_uuid: str
    reviewer: str
    text: str | None = None
    text_sha256: str | None = None
    edited: bool = False
    decided_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
