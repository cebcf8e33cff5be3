"""Change control: who may pause, resume, shadow, activate or retire a model version, and the record.

A change needs an authorised role, an approver's identity and a reason. It commits in one
transaction with its ledger entry and the outbox message that writes the change-control
AuditEvent (E9) and the Provenance of the model version to the EHR's FHIR server.
"""

from __future__ import annotations

import re

from sqlalchemy import Engine, insert

from app.audit import ledger, outbox
from app.audit.outbox import MODEL_CHANGE
from app.db import utcnow
from app.governance.cache import signal_change
from app.governance.lifecycle import ModelChange, current_status
from app.governance.model_card import ModelCard

AUTHORISED_ROLES = frozenset({"cmio", "safety-officer"})
STATUS_AFTER = {
    "pause": "paused",
    "resume": "active",
    "shadow": "shadow",
    "activate": "active",
    "retire": "retired",
}
APPROVER = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")


class ChangeRefused(Exception):
    """The change is not allowed; the message says why, for the person who asked."""


def change_status(
    engine: Engine,
    model: ModelCard,
    action: str,
    *,
    approver: str,
    role: str,
    reason: str,
    writeback_target: str | None,
) -> ModelChange:
    status = STATUS_AFTER.get(action)
    if status is None:
        raise ChangeRefused(f"unknown action {action!r}; one of {', '.join(STATUS_AFTER)}")
    if role not in AUTHORISED_ROLES:
        raise ChangeRefused(
            f"role {role!r} may not change a model; needs one of {', '.join(sorted(AUTHORISED_ROLES))}"
        )
    if not APPROVER.match(approver):
        raise ChangeRefused(
            "approver must be a Practitioner or PractitionerRole reference, e.g. Practitioner/cmio-1"
        )
    if not reason.strip():
        raise ChangeRefused("a reason is required")
    with engine.begin() as connection:
        previous = current_status(connection, model)
        if previous == "retired":
            raise ChangeRefused(f"{model.label} is retired; release a new version instead")
        if previous == status:
            raise ChangeRefused(f"{model.label} is already {status}")
        change = {
            "model_id": model.id,
            "model_version": model.version,
            "action": action,
            "previous_status": previous,
            "status": status,
            "approver": approver,
            "role": role,
            "reason": reason.strip(),
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
