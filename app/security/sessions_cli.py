"""``countersign sessions``: who is signed in to the SMART app, and ending sessions in an incident.

A session is named by a prefix of its key (which opens nothing), its user, role and EHR; no token
is ever printed. Each ended session's refresh token is revoked at its EHR when the EHR offers
revocation, and the end is recorded in the ledger and written back like a sign-out.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime

import click
from flask import current_app
from flask.cli import with_appcontext

from smart_launch.config import EXTENSION_KEY, SmartConfig
from smart_launch.roles import PRACTITIONER
from smart_launch.sign_out import SessionSummary, end_expired, end_signed_in, signed_in_sessions


@click.group("sessions")
def sessions_group() -> None:
    """Signed-in SMART sessions: list them, end them (incident response, expiry)."""


@sessions_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@with_appcontext
def list_command(as_json: bool) -> None:
    """Signed-in sessions, oldest first: session prefix, user, role, EHR, created, expires."""
    sessions = signed_in_sessions(_config().engine)
    if as_json:
        click.echo(json.dumps([_as_json(summary) for summary in sessions], indent=2))
        return
    if not sessions:
        click.echo("no signed-in sessions")
    for summary in sessions:
        click.echo(
            f"{summary.label}  {summary.user or '-'}  {summary.role or '-'}  {summary.ehr or '-'}  "
            f"created {_time(summary.created_at)}  expires {_time(summary.expires_at)}"
        )


@sessions_group.command("end")
@click.option("--user", help="End every session of this user, e.g. Practitioner/cmio-1.")
@click.option("--all", "every", is_flag=True, help="End every signed-in session.")
@click.option("--expired", is_flag=True, help="End the sessions whose lifetime is over (run periodically).")
@with_appcontext
def end_command(user: str | None, every: bool, expired: bool) -> None:
    """End sessions and revoke their refresh tokens at the EHR; the user must launch again.

    Recorded in the ledger (kind session-ended, reason ended-by-operator or expired) and written
    back to the EHR as a logout AuditEvent.
    """
    if [user is not None, every, expired].count(True) != 1:
        raise click.UsageError("name exactly one of --user, --all or --expired")
    if user is not None and not PRACTITIONER.match(user):
        raise click.BadParameter("a Practitioner or PractitionerRole reference", param_hint="--user")
    config = _config()
    ended = end_expired(config) if expired else end_signed_in(config, user)
    click.echo(f"ended {ended} session(s)")


def _config() -> SmartConfig:
    return current_app.extensions[EXTENSION_KEY]


def _as_json(summary: SessionSummary) -> dict:
    created, expires = _time(summary.created_at), _time(summary.expires_at)
    return asdict(summary) | {"created_at": created, "expires_at": expires}


def _time(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")
