"""``countersign outbox``: what the write-back outbox holds, and putting dead letters back.

Output carries ids, kinds, target URLs, counts, times and PHI-safe summaries of the servers'
reasons (``app.audit.outcome_summary``), never a record's or a resource's content.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import Engine

from app.audit import outbox_report
from app.audit.outbox import DEAD, PENDING
from app.audit.outbox_recovery import RetryRefused, retry_dead_letters
from app.db import DATABASE_KEY, utcnow

JSON_HELP = "Print JSON instead of text."


@click.group("outbox")
def outbox_group() -> None:
    """The write-back outbox: what is pending, delivered or dead, and recovery.

    Transient failures (no answer, 5xx, 408, 429) are retried for
    COUNTERSIGN_OUTBOX_RETRY_WINDOW_HOURS; a target that keeps failing is paused (circuit breaker)
    and probed once per COUNTERSIGN_OUTBOX_PROBE_SECONDS. Dead letters wait for an operator: read
    the server's reason with `list --dead`, fix the cause, then `retry`.
    """


@outbox_group.command("status")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@with_appcontext
def status_command(as_json: bool) -> None:
    """Counts by state, target and kind, and each target's breaker.

    Per write-back target: its circuit breaker (closed; open: delivery paused, next probe; half-open:
    a probe is due), its messages by state and kind, and the age of its oldest pending message.
    """
    now = utcnow()
    configured = [server.key for server in current_app.config["COUNTERSIGN"].writeback_servers]
    with _engine().connect() as connection:
        counts = outbox_report.counts(connection)
        targets = outbox_report.targets(connection, configured, now)
    if as_json:
        click.echo(json.dumps(_status_json(counts, targets, now), indent=2))
        return
    if not targets:
        click.echo("no write-back targets configured and no outbox messages")
    for report in targets:
        click.echo(f"{report.target}")
        click.echo(f"  breaker: {_breaker_line(report, now)}")
        totals = ", ".join(f"{report.counts[status]} {status}" for status in outbox_report.STATUSES)
        click.echo(f"  messages: {totals}")
        if report.oldest_pending_at is not None:
            click.echo(f"  oldest pending: {_age(report.oldest_pending_seconds(now))} old")
        for count in (c for c in counts if c.target == report.target):
            click.echo(f"    {count.kind:<16} {count.status:<10} {count.messages}")


@outbox_group.command("list")
@click.option("--dead", "status", flag_value=DEAD, default=True, help="Dead letters (the default).")
@click.option("--pending", "status", flag_value=PENDING, help="Messages still waiting to be delivered.")
@click.option("--target", help="Only messages for this FHIR server base URL.")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1), help="At most this many.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@with_appcontext
def list_command(status: str, target: str | None, limit: int, as_json: bool) -> None:
    """List dead letters (or pending messages) and why they failed.

    Oldest first: id, kind, target, attempts, first and last failure, and the server's reason: HTTP
    status, then per OperationOutcome issue its severity, code, detail codes, expression and
    diagnostics, with every word that could carry patient data masked as … (resource content is
    never printed; the full OperationOutcome stays in the database).
    """
    with _engine().connect() as connection:
        reports = outbox_report.messages(connection, status, target and target.rstrip("/"), limit)
    if as_json:
        click.echo(json.dumps([_message_json(report) for report in reports], indent=2))
        return
    if not reports:
        click.echo(f"no {status} messages")
    for report in reports:
        click.echo(f"#{report.id} {report.kind} -> {report.target}  attempts {report.attempts}")
        if report.last_failed_at is not None:
            http = f"HTTP {report.http_status}" if report.http_status else "no HTTP answer"
            click.echo(
                f"    first failed {_time(report.first_failed_at)}, "
                f"last failed {_time(report.last_failed_at)}: {http}"
            )
        for issue in report.issues:
            click.echo(f"    {issue.line()}")


@outbox_group.command("retry")
@click.option("--id", "ids", multiple=True, type=int, help="A dead letter to retry (repeatable).")
@click.option("--all-dead", "every", is_flag=True, help="Retry every dead letter.")
@with_appcontext
def retry_command(ids: tuple[int, ...], every: bool) -> None:
    """Put dead letters back in the queue once their cause is fixed.

    Attempts are reset and the retry window restarts. Safe to repeat, even for a write that did land:
    each resource is a conditional create keyed by its delivery tag, so nothing lands twice. Recorded
    in the ledger (kind outbox-retried) with the operating-system user who ran it.
    """
    try:
        requeued = retry_dead_letters(_engine(), ids, every)
    except RetryRefused as error:
        raise click.ClickException(str(error)) from None
    if not requeued:
        click.echo("no dead letters to retry")
        return
    click.echo(f"requeued {len(requeued)} dead letter(s): {', '.join(map(str, requeued))}")


def _engine() -> Engine:
    return current_app.extensions[DATABASE_KEY]


def _status_json(
    counts: list[outbox_report.Count], targets: list[outbox_report.TargetReport], now: datetime
) -> dict:
    return {
        "counts": [asdict(count) for count in counts],
        "targets": [
            {
                "target": report.target,
                "breaker": report.breaker,
                "consecutive_faults": report.consecutive_faults,
                "opened_at": _time(report.opened_at),
                "next_probe_at": _time(report.next_probe_at),
                "messages": report.counts,
                "oldest_pending_at": _time(report.oldest_pending_at),
                "oldest_pending_seconds": round(report.oldest_pending_seconds(now), 3),
            }
            for report in targets
        ],
    }


def _message_json(report: outbox_report.MessageReport) -> dict:
    return {
        "id": report.id,
        "kind": report.kind,
        "target": report.target,
        "status": report.status,
        "attempts": report.attempts,
        "created_at": _time(report.created_at),
        "first_failed_at": _time(report.first_failed_at),
        "last_failed_at": _time(report.last_failed_at),
        "http_status": report.http_status,
        "issues": [issue.as_json() for issue in report.issues],
    }


def _breaker_line(report: outbox_report.TargetReport, now: datetime) -> str:
    if report.breaker == "closed":
        faults = f" ({report.consecutive_faults} consecutive faults)" if report.consecutive_faults else ""
        return f"closed{faults}"
    since = f"paused since {_time(report.opened_at)}"
    if report.breaker == "half-open":
        return f"half-open: {since}, a probe is due"
    wait = (report.next_probe_at - now).total_seconds() if report.next_probe_at else 0.0
    return f"open: {since}, next probe in {_age(wait)}"


def _age(seconds: float) -> str:
    seconds = max(seconds, 0.0)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _time(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")
