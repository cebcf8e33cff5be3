"""The ``countersign`` command: serve, migrate, run the demo, sign a demo client token."""

from __future__ import annotations

import json
import threading
from datetime import date, datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import create_engine

from app import DATABASE_KEY, WORKER_KEY, create_app
from app.audit.ledger import verify_database
from app.db import INSTANCE_DIR, default_database_url, utcnow
from app.demo import FHIR_CHOICES, run_demo
from app.demo_client import client_token, ensure_key
from app.evaluation.card_file import measured_section, write_measured
from app.evaluation.cohorts import DEFAULT_COHORT_SIZE, DEFAULT_SEED, GENERATORS, generate
from app.evaluation.runner import evaluate
from app.governance.change_control import AUTHORISED_ROLES, STATUS_AFTER, ChangeRefused, change_status
from app.governance.lifecycle import current_status
from app.integration_check.command import integration_test_command
from app.migrate import StaleSchema, require_current, upgrade
from app.mock_ehr_auth.runner import run_mock_ehr
from app.outbox_cli import outbox_group
from app.prompt_cards import recorded_and_actual_hash
from app.registry import CARDS_DIRECTORY, load_model_cards
from app.safety.dashboard import safety_summary
from app.safety.events import CATEGORIES, SEVERITIES, ReportRefused, report_safety_event
from app.settings import Settings
from app.wsgi_server import DEFAULT_THREADS, default_workers, serve
from smart_launch.blueprint import MODEL_CARDS_KEY


def run_evaluation(model_id: str, size: int, seed: int, cards_dir: Path) -> None:
    path = cards_dir / f"{load_model_cards(cards_dir)[model_id].key}.yaml"
    with click.progressbar(length=size, label=f"{model_id}: generating cohort") as bar:
        cohort = generate(model_id, size, seed, bar.update)
    with click.progressbar(length=size, label=f"{model_id}: evaluating") as bar:
        evaluation = evaluate(model_id, cohort, bar.update)
    command = f"countersign eval {model_id} --size {size} --seed {seed}"
    card = write_measured(path, measured_section(cohort, evaluation, command, date.today()))
    click.echo(f"{path}: {card.source_attributes.internal_validity}")


@click.group(cls=FlaskGroup, create_app=create_app, add_version_option=False)
def main() -> None:
    """Countersign: governed AI decision support for FHIR EHRs.

    Configuration comes from COUNTERSIGN_* environment variables (see the README).
    """


MIGRATE_OPTION = click.option(
    "--migrate", is_flag=True, help="Apply pending schema migrations first instead of refusing to start."
)


def prepare_schema(database_url: str, migrate: bool) -> None:
    """Fail fast, with the fix named, on a database whose schema this version does not expect."""
    if migrate:
        upgrade(database_url)
    engine = create_engine(database_url)
    try:
        require_current(engine)
    except StaleSchema as error:
        raise click.ClickException(str(error)) from None
    finally:
        engine.dispose()


@main.command("serve")
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="Address:port to listen on.")
@click.option("--workers", default=default_workers(), show_default=True, help="Worker processes.")
@click.option("--threads", default=DEFAULT_THREADS, show_default=True, help="Threads per worker.")
@MIGRATE_OPTION
def serve_command(bind: str, workers: int, threads: int, migrate: bool) -> None:
    """Run the service under gunicorn (put a TLS-terminating proxy in front in production).

    Refuses to start on a database whose schema is not current (see `countersign db upgrade`)."""
    prepare_schema(Settings().database_url or default_database_url(), migrate)
    serve(create_app, bind, workers, threads)


@main.group("db")
def db_group() -> None:
    """Database schema commands."""


@db_group.command("upgrade")
@with_appcontext
def db_upgrade_command() -> None:
    """Apply every pending schema migration to COUNTERSIGN_DATABASE_URL."""
    engine = current_app.extensions[DATABASE_KEY]
    upgrade(engine.url.render_as_string(hide_password=False))
    click.echo("database schema is current")


@main.command("demo")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option("--port", default=8000, show_default=True, help="Port of the Countersign service.")
@click.option("--ehr-port", default=8001, show_default=True, help="Port of the sandbox EHR.")
@click.option("--auth-port", default=8002, show_default=True, help="Port of the mock EHR's SMART server.")
@click.option(
    "--fhir",
    "fhir_choice",
    type=click.Choice(FHIR_CHOICES),
    default="embedded",
    show_default=True,
    help="FHIR server to run: the embedded test server, or HAPI FHIR (build it first: make hapi-build).",
)
@click.option("--fhir-url", help="Use a FHIR R4 server you already run (open, no authentication) instead.")
def demo_command(
    host: str, port: int, ehr_port: int, auth_port: int, fhir_choice: str, fhir_url: str | None
) -> None:
    """Run the product on embedded defaults: FHIR test server with synthetic patients, the sandbox
    EHR as a trusted CDS client and SMART EHR, and Countersign writing back to the same FHIR server."""
    run_demo(host, port, ehr_port, auth_port, fhir_choice, fhir_url)


@main.command("mock-ehr")
@click.option("--fhir-base", required=True, help="FHIR server the mock EHR fronts (the FHIR test server).")
@click.option("--port", default=9000, show_default=True, help="Loopback port of the mock EHR.")
@click.option("--redirect-uri", default="http://localhost:8000/app/callback", show_default=True)
@click.option("--client-secret", envvar="COUNTERSIGN_MOCK_EHR_CLIENT_SECRET", required=True)
def mock_ehr_command(fhir_base: str, port: int, redirect_uri: str, client_secret: str) -> None:
    """Run the mock SMART EHR (authorization server + FHIR proxy) for the demo; never in production."""
    run_mock_ehr(fhir_base, redirect_uri, client_secret, port)


@main.command("client-token")
@click.option("--aud", required=True, help="Exact URL of the endpoint the token is for.")
def client_token_command(aud: str) -> None:
    """Print a one-use JWT signed by the demo CDS client's key (for curl against the demo)."""
    click.echo(client_token(ensure_key(INSTANCE_DIR), aud))


@main.command("worker")
@click.option("--once", is_flag=True, help="Deliver what is due now, then exit.")
@MIGRATE_OPTION
@with_appcontext
def worker_command(once: bool, migrate: bool) -> None:
    """Drain the write-back outbox (run several at scale; leases keep them apart).

    Refuses to start on a database whose schema is not current (see `countersign db upgrade`)."""
    prepare_schema(current_app.config["COUNTERSIGN"].database_url or default_database_url(), migrate)
    worker = current_app.extensions[WORKER_KEY]
    if once:
        click.echo(f"settled {worker.run_once()} outbox messages")
        return
    click.echo(f"outbox worker {worker.owner} running (Ctrl-C stops it)")
    stop = threading.Event()
    try:
        worker.run_forever(stop)
    except KeyboardInterrupt:
        stop.set()


main.add_command(outbox_group)


@main.group("model")
def model_group() -> None:
    """Model lifecycle and change control (cmio or safety-officer, with an approver and a reason)."""


@model_group.command("list")
@with_appcontext
def model_list_command() -> None:
    """Each model version and its current status."""
    with current_app.extensions[DATABASE_KEY].connect() as connection:
        for model in current_app.extensions[MODEL_CARDS_KEY].values():
            click.echo(f"{model.id}  {model.version}  {current_status(connection, model)}")


def _change_command(action: str, status: str) -> click.Command:
    @click.argument("model_id")
    @click.option(
        "--approver", required=True, help="FHIR reference of the approver, e.g. Practitioner/cmio-1."
    )
    @click.option(
        "--role", required=True, type=click.Choice(sorted(AUTHORISED_ROLES)), help="Approver's role."
    )
    @click.option("--reason", required=True, help="Why; kept in the ledger and the AuditEvent.")
    @with_appcontext
    def command(model_id: str, approver: str, role: str, reason: str) -> None:
        model = current_app.extensions[MODEL_CARDS_KEY].get(model_id)
        if model is None:
            raise click.BadParameter(f"no model {model_id!r}", param_hint="MODEL_ID")
        settings = current_app.config["COUNTERSIGN"]
        try:
            change = change_status(
                current_app.extensions[DATABASE_KEY],
                model,
                action,
                approver=approver,
                role=role,
                reason=reason,
                writeback_target=settings.writeback_target(None),
            )
        except ChangeRefused as error:
            raise click.ClickException(str(error)) from None
        click.echo(f"{model.label}: {change.previous_status} -> {change.status}")

    command.__doc__ = f"Set a model version to {status}."
    return click.command(action)(command)


for _action, _status in STATUS_AFTER.items():
    model_group.add_command(_change_command(_action, _status))


@main.group("safety")
def safety_group() -> None:
    """AI-associated safety events and the safety dashboard's figures."""


@safety_group.command("report")
@click.option("--card", "card_uuid", required=True, help="uuid of the card the event followed.")
@click.option("--category", required=True, type=click.Choice(CATEGORIES), help="AdverseEvent category.")
@click.option("--severity", required=True, type=click.Choice(SEVERITIES), help="AdverseEvent severity.")
@click.option(
    "--occurred", required=True, type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z"]), help="When, with zone."
)
@click.option("--reporter", required=True, help="FHIR reference of the reporter, e.g. Practitioner/rn-7.")
@click.option("--description", required=True, help="What happened (kept in the record, never logged).")
@with_appcontext
def safety_report_command(
    card_uuid: str, category: str, severity: str, occurred: datetime, reporter: str, description: str
) -> None:
    """Record a safety event against a card; written back to the EHR as an AdverseEvent."""
    try:
        event = report_safety_event(
            current_app.extensions[DATABASE_KEY],
            card_uuid=card_uuid,
            category=category,
            severity=severity,
            description=description,
            reporter=reporter,
            occurred_at=occurred,
            writeback_target=current_app.config["COUNTERSIGN"].writeback_target,
        )
    except ReportRefused as error:
        raise click.ClickException(str(error)) from None
    hours = (event.detected_at - event.card_shown_at).total_seconds() / 3600
    click.echo(
        f"safety event {event.id} recorded against {event.model_id}-{event.model_version}; "
        f"detected {hours:.1f} h after the card was shown"
    )


@safety_group.command("summary")
@click.option(
    "--recent-days", default=7, show_default=True, help="Window compared with the baseline for drift."
)
@with_appcontext
def safety_summary_command(recent_days: int) -> None:
    """Print the safety dashboard's figures per model version as JSON."""
    with current_app.extensions[DATABASE_KEY].connect() as connection:
        figures = safety_summary(connection, utcnow(), recent_days)
    click.echo(json.dumps([f.as_json() for f in figures], indent=2))


@main.command("eval")
@click.argument("models", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Evaluate every model that has a cohort.")
@click.option("--size", default=DEFAULT_COHORT_SIZE, show_default=True, help="Synthetic patients.")
@click.option("--seed", default=DEFAULT_SEED, show_default=True, help="Seed of the cohort generator.")
@click.option(
    "--cards-dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=CARDS_DIRECTORY,
    show_default=True,
    help="Directory of the model card files to update.",
)
def eval_command(models: tuple[str, ...], every: bool, size: int, seed: int, cards_dir: Path) -> None:
    """Evaluate MODELS on a labelled synthetic cohort and write the measured section of their cards.

    Sensitivity, PPV and specificity per finding (and AUROC and calibration by score band for risk
    scores), each with a 95 % interval, broken down by sex, age band, race and ethnicity. The card
    records the cohort's hash, size, seed and date, so anyone can rerun the command and compare.
    """
    chosen = sorted(GENERATORS) if every else list(models)
    unknown = sorted(set(chosen) - set(GENERATORS))
    if not chosen or unknown:
        raise click.UsageError(f"name models to evaluate (or --all); known: {', '.join(sorted(GENERATORS))}")
    for model_id in chosen:
        run_evaluation(model_id, size, seed, cards_dir)


@main.group("prompt")
def prompt_group() -> None:
    """Prompt cards (versioned, immutable prompt templates)."""


@prompt_group.command("hash")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def prompt_hash_command(path: Path) -> None:
    """Print the content_sha256 a prompt card's template needs (exit 1 if the file records another)."""
    recorded, actual = recorded_and_actual_hash(path)
    click.echo(actual)
    if recorded != actual:
        click.echo(f"{path.name}: content_sha256 records {recorded or 'nothing'}", err=True)
        raise SystemExit(1)


@main.group("audit")
def audit_group() -> None:
    """Audit trail commands."""


@audit_group.command("verify")
@with_appcontext
def audit_verify_command() -> None:
    """Walk the hash-chained ledger; exit 1 naming the first broken entry."""
    with current_app.extensions[DATABASE_KEY].connect() as connection:
        result = verify_database(connection)
    if result.intact:
        click.echo(f"ledger intact: {result.entries} entries")
        return
    click.echo(f"ledger broken at entry {result.broken_at}: {result.reason}", err=True)
    raise SystemExit(1)


main.add_command(integration_test_command)


if __name__ == "__main__":
    main()
