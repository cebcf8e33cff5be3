"""Change control: who may pause, resume, shadow or retire a model version, and the record.

A change needs an authorised governor (a Practitioner reference with a governing role) and a
reason. It commits in one transaction with its ledger entry and the outbox message that writes the
change-control AuditEvent (E9) and the Provenance of the model version to the EHR's FHIR server.
Switching a version on for clinicians is not a change one governor makes alone: that is a
promotion, proposed and approved by two (``app.governance.promotion``); ``resume`` only gives
back a version its own pause took from clinicians.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sqlalchemy import Connection, Engine, func, insert, select

from app.audit import ledger, outbox
from app.audit.outbox import MODEL_CHANGE
from app.db import retrying, utcnow
from app.governance.cache import signal_change
from app.governance.lifecycle import ModelChange, active_version, version_statuses
from app.governance.model_card import ModelCard, ModelRegistry

AUTHORISED_ROLES = frozenset({"cmio", "safety-officer"})
STATUS_AFTER = {"pause": "paused", "resume": "active", "shadow": "shadow", "retire": "retired"}
APPROVER = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")
MAX_REASON = 2000
T = TypeVar("T")


class ChangeRefused(Exception):
    """The change is not allowed; the message says why, for the person who asked."""


class NotFound(ChangeRefused):
    """What the change names does not exist (a model, a version, a proposal)."""


@dataclass(frozen=True)
class Governor:
    """Who acts: a FHIR reference, a governing role and, when known, the name people read."""

    reference: str
    role: str
    name: str | None = None

    def check(self) -> None:
        if self.role not in AUTHORISED_ROLES:
            roles = ", ".join(sorted(AUTHORISED_ROLES))
            raise ChangeRefused(f"role {self.role!r} may not change a model; needs one of {roles}")
        if not APPROVER.match(self.reference):
            raise ChangeRefused(
                "approver must be a Practitioner or PractitionerRole reference, e.g. Practitioner/cmio-1"
            )


def checked_reason(reason: str) -> str:
    if not reason.strip():
        raise ChangeRefused("a reason is required")
    if len(reason) > MAX_REASON:
        raise ChangeRefused(f"the reason must be at most {MAX_REASON} characters")
    return reason.strip()


def governed(engine: Engine, model_id: str, work: Callable[[Connection], T]) -> T:
    """One change-control transaction on a model: serialised per model (PostgreSQL: an advisory
    lock; SQLite: one writer, and a stale snapshot fails and is retried), so two governors acting
    at once cannot both switch a version on."""

    def attempt() -> T:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                key = zlib.crc32(f"countersign-model:{model_id}".encode())
                connection.execute(select(func.pg_advisory_xact_lock(key)))
            return work(connection)

    return retrying(attempt)


def change_status(
    engine: Engine,
    registry: ModelRegistry,
    model: ModelCard,
    action: str,
    *,
    governor: Governor,
    reason: str,
    writeback_target: str | None,
) -> ModelChange:
    status = STATUS_AFTER.get(action)
    if status is None:
        raise ChangeRefused(f"unknown action {action!r}; one of {', '.join(STATUS_AFTER)}")
    governor.check()
    reason = checked_reason(reason)

    def work(connection: Connection) -> ModelChange:
        statuses = version_statuses(connection, registry.versions(model.id))
        previous = statuses[model.version]
        if previous == "retired":
            raise ChangeRefused(f"{model.label} is retired; release a new version instead")
        if previous == status:
            raise ChangeRefused(f"{model.label} is already {status}")
        if action == "resume":
            _check_resume(connection, model, statuses)
        return record_change(connection, model, action, previous, status, governor, reason, writeback_target)

    return governed(engine, model.id, work)


def _check_resume(connection: Connection, model: ModelCard, statuses: dict[str, str]) -> None:
    """Only what a pause took from clinicians comes back by ``resume``, and only while no other
    version answers them."""
    paused_from = connection.execute(
        select(ModelChange.previous_status)
        .where(ModelChange.model_id == model.id, ModelChange.model_version == model.version)
        .order_by(ModelChange.id.desc())
        .limit(1)
    ).scalar()
    if paused_from != "active":
        raise ChangeRefused(
            f"{model.label} was not paused from active; a version goes active only by a promotion "
            "(proposed by one governor, approved by another)"
        )
    active = active_version(statuses)
    if active is not None:
        raise ChangeRefused(f"{model.id} {active} is active; at most one version of a model may be active")


def record_change(
    connection: Connection,
    model: ModelCard,
    action: str,
    previous: str,
    status: str,
    governor: Governor,
    reason: str,
    writeback_target: str | None,
) -> ModelChange:
    """Insert one status change with its ledger entry and write-back message; every worker's
    governance cache hears of it at commit."""
    change = {
        "model_id": model.id,
        "model_version": model.version,
        "action": action,
        "previous_status": previous,
        "status": status,
        "approver": governor.reference,
        "approver_name": governor.name,
        "role": governor.role,
        "reason": reason,
        "changed_at": utcnow(),
    }
    change_id = connection.execute(insert(ModelChange).returning(ModelChange.id), change).scalar_one()
    signal_change(connection)
    ledger.append(
        connection,
        "model-status-changed",
        change | {"changed_at": change["changed_at"].isoformat()},
        about=(ModelChange, change_id),
    )
    if writeback_target is not None:
        outbox.enqueue(connection, MODEL_CHANGE, change_id, writeback_target)
    return ModelChange(id=change_id, **change)
