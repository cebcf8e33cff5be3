"""Model lifecycle: each model's status is the latest approved change, else its model card's status.

``active`` answers with cards; ``shadow`` runs and records what it would have said but shows
nothing (silent validation before go-live); ``paused`` and ``retired`` do not run, and each
invocation is recorded as suppressed. The hook path reads the status through each worker's
governance cache (``app.governance.cache``), which every change invalidates on every worker, so
a pause takes effect everywhere within a second.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Connection, DateTime, bindparam, select
from sqlmodel import Field, SQLModel

from app.audit.ledger import ledgered
from app.db import utcnow
from app.governance.model_card import ModelCard


@ledgered
class ModelChange(SQLModel, table=True):
    """One approved change of a model version's status; the table is its version history."""

    __tablename__ = "model_change"

    id: int | None = Field(default=None, primary_key=True)
    model_id: str = Field(index=True)
    model_version: str
    action: str
    previous_status: str
    status: str
    approver: str
    role: str
    reason: str
    changed_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


# Built once: the hook path runs it on every call, and building a statement costs more than running it.
LATEST_STATUS = (
    select(ModelChange.status)
    .where(ModelChange.model_id == bindparam("model_id"), ModelChange.model_version == bindparam("version"))
    .order_by(ModelChange.id.desc())
    .limit(1)
)


def current_status(connection: Connection, model: ModelCard) -> str:
    latest = connection.execute(LATEST_STATUS, {"model_id": model.id, "version": model.version}).scalar()
    return latest or model.status
