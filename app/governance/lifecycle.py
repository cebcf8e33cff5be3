"""Model lifecycle: each version's status is its latest approved change, else its model card's status.

At most one version of a model is ``active``: it answers with cards. Any number may be in
``shadow``: they run on the same calls off the request path, and what they would have said is
recorded but never shown (silent validation before go-live). ``paused`` and ``retired`` versions
do not run; a call the model has no active version for is recorded as suppressed. The hook path
reads the statuses through each worker's governance cache (``app.governance.cache``), which every
change invalidates on every worker, so a pause or a rollback takes effect everywhere within a second.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Column, Connection, DateTime, bindparam, func, select
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
    approver_name: str | None = None
    changed_at: datetime = Field(
        default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False)
    )


# Built once: the hook path runs it whenever a worker's governance cache was invalidated.
LATEST_STATUSES = (
    select(ModelChange.model_version, ModelChange.status)
    .where(
        ModelChange.id.in_(
            select(func.max(ModelChange.id))
            .where(ModelChange.model_id == bindparam("model_id"))
            .group_by(ModelChange.model_version)
        )
    )
    .order_by(ModelChange.id.desc())
)


class Standing(NamedTuple):
    """Each version's status, in version order, and the version that answers for the model."""

    statuses: dict[str, str]
    lead: str


def standing(connection: Connection, versions: list[ModelCard]) -> Standing:
    """Each of ``versions`` (one model's) with its current status, and the one that answers, or
    whose status says why none does: the active one; else the last one change control paused or
    retired (a version installed paused never answered); else the last one changed, or with no
    change yet the first. One statement."""
    changed = dict(connection.execute(LATEST_STATUSES, {"model_id": versions[0].id}).all())  # latest first
    statuses = {card.version: changed.get(card.version, card.status) for card in versions}
    touched = [version for version in changed if version in statuses]
    stopped = (version for version in touched if statuses[version] in ("paused", "retired"))
    fallback = touched[0] if touched else versions[0].version
    return Standing(statuses, active_version(statuses) or next(stopped, fallback))


def version_statuses(connection: Connection, versions: list[ModelCard]) -> dict[str, str]:
    return standing(connection, versions).statuses


def active_version(statuses: dict[str, str]) -> str | None:
    return next((version for version, status in statuses.items() if status == "active"), None)
