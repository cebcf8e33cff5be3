"""Two-person promotion and one-step rollback of model versions.

A shadow version becomes active only when one governor proposes it and a *different* one approves:
each act carries a reason, is ledgered and is written back to the EHR (AuditEvent and Provenance).
Approval retires the version it replaces, which is kept so that one governor can roll back at
once, as an incident action with a reason and no second approval. Acts are rows that are never
updated: a proposal is pending while no approval or withdrawal names it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Connection, DateTime, Engine, insert, select
from sqlmodel import Field, SQLModel

from app.audit import ledger, outbox
from app.audit.ledger import ledgered
from app.audit.outbox import MODEL_PROMOTION
from app.db import utcnow
from app.governance.change_control import (
    ChangeRefused,
    Governor,
    NotFound,
    checked_reason,
    governed,
    record_change,
)
from app.governance.lifecycle import active_version, version_statuses
from app.governance.model_card import ModelCard, ModelRegistry

PAST = {"approve": "approved", "withdraw": "withdrawn"}
LEDGER_KIND = {
    "propose": "model-promotion-proposed",
    "approve": "model-promotion-approved",
    "withdraw": "model-promotion-withdrawn",
    "rollback": "model-rolled-back",
}


@ledgered
class ModelPromotion(SQLModel, table=True):
    """One act: ``propose`` (model_version to replace from_version), ``approve`` or ``withdraw``
    (of ``proposal``), or ``rollback`` (from model_version back to from_version)."""

    __tablename__ = "model_promotion"

    id: int | None = Field(default=None, primary_key=True)
    act: str
    proposal: int | None = Field(default=None, index=True)
    model_id: str = Field(index=True)
    model_version: str
    from_version: str | None = None
    by: str
    by_name: str | None = None
    role: str
    reason: str
    at: datetime = Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


def propose(
    engine: Engine,
    registry: ModelRegistry,
    model: ModelCard,
    *,
    governor: Governor,
    reason: str,
    writeback_target: str | None,
) -> ModelPromotion:
    """Propose ``model`` (a shadow version) for active, replacing the version active now."""
    governor.check()
    reason = checked_reason(reason)

    def work(connection: Connection) -> ModelPromotion:
        statuses = version_statuses(connection, registry.versions(model.id))
        if statuses[model.version] != "shadow":
            raise ChangeRefused(
                f"{model.label} is {statuses[model.version]}; only a version in shadow, "
                "with calls to compare it on, can be proposed for active"
            )
        waiting = pending(connection, model.id)
        if waiting:
            raise ChangeRefused(
                f"proposal #{waiting[0].id} for {model.id} {waiting[0].model_version} is pending; "
                "approve or withdraw it first"
            )
        act = _act("propose", model.id, model.version, active_version(statuses), governor, reason)
        return _record(connection, act, writeback_target)

    return governed(engine, model.id, work)


def approve(
    engine: Engine,
    registry: ModelRegistry,
    proposal_id: int,
    *,
    governor: Governor,
    reason: str,
    writeback_target: str | None,
) -> ModelPromotion:
    """A second governor approves: the candidate becomes active, the version it replaces retired."""
    governor.check()
    reason = checked_reason(reason)
    model_id = _proposal_model(engine, proposal_id)

    def work(connection: Connection) -> ModelPromotion:
        proposal = _pending_proposal(connection, proposal_id)
        if proposal.by == governor.reference:
            raise ChangeRefused(
                f"{governor.reference} proposed #{proposal.id} and may not approve it: "
                "a different governor (cmio or safety-officer) must"
            )
        statuses = version_statuses(connection, registry.versions(model_id))
        candidate = _card(registry, model_id, proposal.model_version)
        if statuses[candidate.version] != "shadow":
            raise ChangeRefused(
                f"{candidate.label} is {statuses[candidate.version]} now, no longer in shadow"
            )
        replaced = active_version(statuses)
        if replaced != proposal.from_version:
            raise ChangeRefused(
                f"the active version of {model_id} is {replaced or 'none'} now, not "
                f"{proposal.from_version or 'none'} as proposed; withdraw and propose again"
            )
        act = _act("approve", model_id, candidate.version, replaced, governor, reason, proposal.id)
        approval = _record(connection, act, writeback_target)
        record_change(
            connection, candidate, "promote", "shadow", "active", governor, reason, writeback_target
        )
        if replaced is not None:
            previous = _card(registry, model_id, replaced)
            record_change(
                connection, previous, "supersede", "active", "retired", governor, reason, writeback_target
            )
        return approval

    return governed(engine, model_id, work)


def withdraw(
    engine: Engine,
    registry: ModelRegistry,
    proposal_id: int,
    *,
    governor: Governor,
    reason: str,
    writeback_target: str | None,
) -> ModelPromotion:
    """Any governor may withdraw a pending proposal (its proposer, or one who would not approve it)."""
    governor.check()
    reason = checked_reason(reason)
    model_id = _proposal_model(engine, proposal_id)

    def work(connection: Connection) -> ModelPromotion:
        proposal = _pending_proposal(connection, proposal_id)
        act = _act(
            "withdraw", model_id, proposal.model_version, proposal.from_version, governor, reason, proposal.id
        )
        return _record(connection, act, writeback_target)

    return governed(engine, model_id, work)


def rollback(
    engine: Engine,
    registry: ModelRegistry,
    model_id: str,
    *,
    governor: Governor,
    reason: str,
    writeback_target: str | None,
) -> ModelPromotion:
    """Undo the model's last promotion at once: the version it retired is active again, the
    promoted one retired. One governor, no second approval: this is an incident action."""
    governor.check()
    reason = checked_reason(reason)
    if model_id not in registry:
        raise NotFound(f"no model {model_id!r}")

    def work(connection: Connection) -> ModelPromotion:
        last = undoable_promotion(connection, registry, model_id)
        if last is None:
            raise ChangeRefused(
                f"{model_id} has no previous version to roll back to: no approved promotion replaced "
                "an active version since the last rollback"
            )
        statuses = version_statuses(connection, registry.versions(model_id))
        current = _card(registry, model_id, last.model_version)
        restored = _card(registry, model_id, last.from_version)
        act = _act("rollback", model_id, current.version, restored.version, governor, reason)
        rolled_back = _record(connection, act, writeback_target)
        if statuses[current.version] != "retired":
            previous = statuses[current.version]
            record_change(
                connection, current, "roll-back", previous, "retired", governor, reason, writeback_target
            )
        record_change(
            connection, restored, "restore", "retired", "active", governor, reason, writeback_target
        )
        return rolled_back

    return governed(engine, model_id, work)


def pending(connection: Connection, model_id: str) -> list[ModelPromotion]:
    """Proposals for the model that nobody approved or withdrew yet, oldest first."""
    decided = select(ModelPromotion.proposal).where(ModelPromotion.proposal.is_not(None))
    query = (
        select(ModelPromotion)
        .where(
            ModelPromotion.model_id == model_id,
            ModelPromotion.act == "propose",
            ModelPromotion.id.not_in(decided),
        )
        .order_by(ModelPromotion.id)
    )
    return _acts(connection, query)


def history(connection: Connection, model_id: str) -> list[ModelPromotion]:
    """Every act on the model's versions, oldest first."""
    query = select(ModelPromotion).where(ModelPromotion.model_id == model_id).order_by(ModelPromotion.id)
    return _acts(connection, query)


def _acts(connection: Connection, query) -> list[ModelPromotion]:
    return [ModelPromotion.model_validate(row._mapping) for row in connection.execute(query)]


def _act(
    act: str,
    model_id: str,
    version: str,
    from_version: str | None,
    governor: Governor,
    reason: str,
    proposal: int | None = None,
) -> dict:
    return {
        "act": act,
        "proposal": proposal,
        "model_id": model_id,
        "model_version": version,
        "from_version": from_version,
        "by": governor.reference,
        "by_name": governor.name,
        "role": governor.role,
        "reason": reason,
        "at": utcnow(),
    }


def _record(connection: Connection, act: dict, writeback_target: str | None) -> ModelPromotion:
    act_id = connection.execute(insert(ModelPromotion).returning(ModelPromotion.id), act).scalar_one()
    entry = act | {"at": act["at"].isoformat()}
    ledger.append(connection, LEDGER_KIND[act["act"]], entry, about=(ModelPromotion, act_id))
    if writeback_target is not None:
        outbox.enqueue(connection, MODEL_PROMOTION, act_id, writeback_target)
    return ModelPromotion(id=act_id, **act)


def _proposal_model(engine: Engine, proposal_id: int) -> str:
    with engine.connect() as connection:
        proposal = connection.execute(
            select(ModelPromotion.model_id).where(
                ModelPromotion.id == proposal_id, ModelPromotion.act == "propose"
            )
        ).scalar()
    if proposal is None:
        raise NotFound(f"no proposal #{proposal_id}")
    return proposal


def _pending_proposal(connection: Connection, proposal_id: int) -> ModelPromotion:
    acts = _acts(
        connection,
        select(ModelPromotion)
        .where((ModelPromotion.id == proposal_id) | (ModelPromotion.proposal == proposal_id))
        .order_by(ModelPromotion.id),
    )
    proposal, decisions = acts[0], acts[1:]
    if decisions:
        decided = decisions[0]
        raise ChangeRefused(f"proposal #{proposal_id} was already {PAST[decided.act]} by {decided.by}")
    return proposal


def undoable_promotion(
    connection: Connection, registry: ModelRegistry, model_id: str
) -> ModelPromotion | None:
    """The approval a rollback would undo: the latest one, unless a rollback came after it (a
    rollback undoes one step only), it replaced no version, or that version is no longer retired."""
    query = (
        select(ModelPromotion)
        .where(ModelPromotion.model_id == model_id, ModelPromotion.act.in_(("approve", "rollback")))
        .order_by(ModelPromotion.id.desc())
        .limit(1)
    )
    acts = _acts(connection, query)
    last = acts[0] if acts and acts[0].act == "approve" else None
    if last is None or last.from_version is None:
        return None
    statuses = version_statuses(connection, registry.versions(model_id))
    return last if statuses.get(last.from_version) == "retired" else None


def _card(registry: ModelRegistry, model_id: str, version: str) -> ModelCard:
    card = registry.card(model_id, version)
    if card is None:
        raise NotFound(f"no model card for {model_id} {version}")
    return card
