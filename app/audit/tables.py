"""Tables of the durable record: card sets as sent, each card, and each clinician decision."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, Column, DateTime
from sqlmodel import Field, SQLModel

from app.audit.ledger import ledgered
from app.db import as_utc, utcnow


def _json() -> Column:
    return Column(JSON, nullable=False)


def _timestamp(*, index: bool = False) -> Column:
    return Column(DateTime(timezone=True), nullable=False, index=index)


@ledgered
class CardSet(SQLModel, table=True):
    """One response to one hook call, including responses with no card."""

    __tablename__ = "card_set"

    id: int | None = Field(default=None, primary_key=True)
    uuid: str = Field(unique=True)
    hook_instance: str = Field(index=True)
    service_id: str = Field(index=True)
    hook: str
    model_id: str
    model_version: str
    disposition: str = "issued"
    patient_id: str = Field(index=True)
    encounter_id: str | None = None
    user_id: str
    fhir_server: str | None = None
    input_refs: list[str] = Field(default_factory=list, sa_column=_json())
    fetched_prefetch_keys: list[str] = Field(default_factory=list, sa_column=_json())
    latency_ms: float | None = None
    failure: str | None = None
    created_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp(index=True))


class IssuedCard(SQLModel, table=True):
    """A card exactly as the EHR received it, keyed by the uuid feedback will quote."""

    __tablename__ = "issued_card"

    uuid: str = Field(primary_key=True)
    card_set_id: int = Field(foreign_key="card_set.id", index=True)
    service_id: str = Field(index=True)
    indicator: str
    confidence: float
    rule_id: str = ""
    suggestion_uuids: list[str] = Field(default_factory=list, sa_column=_json())
    evidence_refs: list[str] = Field(default_factory=list, sa_column=_json())
    card: dict = Field(default_factory=dict, sa_column=_json())
    held_for_review: list[dict] = Field(default_factory=list, sa_column=_json())


@ledgered
class CardDecision(SQLModel, table=True):
    """A clinician's accept or override of a card; a resent item is stored once (fingerprint)."""

    __tablename__ = "card_decision"

    id: int | None = Field(default=None, primary_key=True)
    fingerprint: str = Field(unique=True)
    card_uuid: str = Field(foreign_key="issued_card.uuid", index=True)
    outcome: str
    accepted_suggestions: list[str] = Field(default_factory=list, sa_column=_json())
    override_system: str | None = None
    override_code: str | None = None
    override_display: str | None = None
    user_comment: str | None = None
    outcome_timestamp: datetime = Field(sa_column=_timestamp())
    received_at: datetime = Field(default_factory=utcnow, sa_column=_timestamp(index=True))

    def decided_at(self, issued_at: datetime) -> datetime:
        """When the decision was made, bounded by our own clock: never before the card it decides
        on, never after we heard of it. The EHR's clock may be skewed, so its claim only places the
        decision inside that window; the claim itself stays as given in ``outcome_timestamp``."""
        return min(max(as_utc(self.outcome_timestamp), as_utc(issued_at)), as_utc(self.received_at))
