"""``countersign model``: model versions, their status, two-person promotion and rollback.

The commands call the same functions as the app's pages and API (``change_control`` and
``promotion``), so a change made here is ledgered and written back exactly as one made there.
"""

from __future__ import annotations

from collections.abc import Callable

import click
from flask import current_app
from flask.cli import with_appcontext

from app.db import DATABASE_KEY
from app.governance.change_control import (
    AUTHORISED_ROLES,
    STATUS_AFTER,
    ChangeRefused,
    Governor,
    change_status,
)
from app.governance.lifecycle import standing, version_statuses
from app.governance.model_card import MODEL_CARDS_KEY, ModelCard, ModelRegistry
from app.governance.promotion import ModelPromotion, approve, pending, propose, rollback, withdraw

ACTED = {"propose": "proposed", "approve": "approved", "withdraw": "withdrew", "rollback": "rolled back"}


@click.group("model")
def model_group() -> None:
    """Model versions and change control: every act needs a governor (cmio or safety-officer) and a
    reason, and is ledgered and written back to the EHR as AuditEvent and Provenance.

    A shadow version goes active only by promotion: one governor proposes, a different one
    approves. One governor may roll back the last promotion at once (an incident action).
    """


def _governor_options(command: Callable) -> Callable:
    for option in reversed(
        (
            click.option(
                "--approver", required=True, help="FHIR reference of who acts, e.g. Practitioner/cmio-1."
            ),
            click.option(
                "--role", required=True, type=click.Choice(sorted(AUTHORISED_ROLES)), help="Their role."
            ),
            click.option("--name", default=None, help="Their name as people read it in the audit trail."),
            click.option("--reason", required=True, help="Why; kept in the ledger and the AuditEvent."),
        )
    ):
        command = option(command)
    return command


def _registry() -> ModelRegistry:
    return current_app.extensions[MODEL_CARDS_KEY]


def _target() -> str | None:
    return current_app.config["COUNTERSIGN"].writeback_target(None)


def _model(model_id: str, version: str | None) -> ModelCard:
    """The named version; without ``--version``, the one that answers now (``lifecycle.standing``)."""
    versions = _registry().versions(model_id)
    if not versions:
        raise click.BadParameter(f"no model {model_id!r}", param_hint="MODEL_ID")
    if version is None:
        with current_app.extensions[DATABASE_KEY].connect() as connection:
            version = standing(connection, versions).lead
    card = _registry().card(model_id, version)
    if card is None:
        raise click.BadParameter(f"{model_id} has no version {version}", param_hint="--version")
    return card


def _acting(work: Callable[[], ModelPromotion | object]) -> object:
    try:
        return work()
    except ChangeRefused as error:
        raise click.ClickException(str(error)) from None


@model_group.command("list")
@with_appcontext
def model_list_command() -> None:
    """Every model version with its status, and pending proposals."""
    registry = _registry()
    with current_app.extensions[DATABASE_KEY].connect() as connection:
        for model_id in registry.ids():
            for version, status in version_statuses(connection, registry.versions(model_id)).items():
                click.echo(f"{model_id}  {version}  {status}")
            for proposal in pending(connection, model_id):
                click.echo(
                    f"{model_id}  proposal #{proposal.id}: {proposal.model_version} for active "
                    f"(replacing {proposal.from_version or 'none'}), proposed by {proposal.by}"
                )


def _change_command(action: str, status: str) -> click.Command:
    @click.argument("model_id")
    @click.option("--version", default=None, help="The version; default: the one that answers now.")
    @_governor_options
    @with_appcontext
    def command(
        model_id: str, version: str | None, approver: str, role: str, name: str | None, reason: str
    ) -> None:
        model = _model(model_id, version)
        governor = Governor(approver, role, name)
        change = _acting(
            lambda: change_status(
                current_app.extensions[DATABASE_KEY],
                _registry(),
                model,
                action,
                governor=governor,
                reason=reason,
                writeback_target=_target(),
            )
        )
        click.echo(f"{model.label}: {change.previous_status} -> {change.status}")

    command.__doc__ = f"Set a model version to {status}."
    return click.command(action)(command)


for _action, _status in STATUS_AFTER.items():
    model_group.add_command(_change_command(_action, _status))


@model_group.command("propose")
@click.argument("model_id")
@click.option("--version", required=True, help="The shadow version to make active.")
@_governor_options
@with_appcontext
def propose_command(
    model_id: str, version: str, approver: str, role: str, name: str | None, reason: str
) -> None:
    """Propose a shadow version for active; a different governor must approve it."""
    _promotion_act(propose, _model(model_id, version), Governor(approver, role, name), reason)


def _decision_command(name: str, decide: Callable[..., ModelPromotion], help_text: str) -> click.Command:
    @click.argument("proposal_id", type=int)
    @_governor_options
    @with_appcontext
    def command(proposal_id: int, approver: str, role: str, name: str | None, reason: str) -> None:
        _promotion_act(decide, proposal_id, Governor(approver, role, name), reason)

    command.__doc__ = help_text
    return click.command(name)(command)


model_group.add_command(
    _decision_command(
        "approve", approve, "Approve a pending proposal (not your own): the version goes active at once."
    )
)
model_group.add_command(_decision_command("withdraw", withdraw, "Withdraw a pending proposal."))


@model_group.command("rollback")
@click.argument("model_id")
@_governor_options
@with_appcontext
def rollback_command(model_id: str, approver: str, role: str, name: str | None, reason: str) -> None:
    """Undo the model's last promotion at once: the version it replaced is active again."""
    _promotion_act(rollback, model_id, Governor(approver, role, name), reason)


def _promotion_act(
    act: Callable[..., ModelPromotion], subject: object, governor: Governor, reason: str
) -> None:
    """One promotion act (its subject: a version, a proposal number, a model id), then what it did."""
    done = _acting(
        lambda: act(
            current_app.extensions[DATABASE_KEY],
            _registry(),
            subject,
            governor=governor,
            reason=reason,
            writeback_target=_target(),
        )
    )
    _echo(done)


def _echo(act: ModelPromotion) -> None:
    if act.act == "rollback":
        click.echo(f"{act.model_id}: rolled back from {act.model_version} to {act.from_version}")
        return
    click.echo(
        f"{act.model_id} {act.model_version}: {ACTED[act.act]} "
        f"(proposal #{act.proposal or act.id}, replacing {act.from_version or 'none'})"
    )
