"""The ``countersign`` command: serve, migrate, run the demo, sign a demo client token."""

from __future__ import annotations

import importlib
import json
import os
import threading
import time
from datetime import date, datetime
from pathlib import Path

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext
from sqlalchemy import create_engine

from app import DATABASE_KEY, SEALER_KEY, WORKER_KEY, create_app
from app.audit.ledger import seal_now, verify_from_checkpoint
from app.audit.outbox_cli import outbox_group
from app.db import default_database_url, prepare_sqlite_file, utcnow
from app.evaluation.card_file import measured_section, write_measured
from app.evaluation.cohorts import DEFAULT_COHORT_SIZE, DEFAULT_SEED, GENERATORS, generate
from app.evaluation.runner import evaluable, evaluate
from app.governance.model_card import CARDS_DIRECTORY, ModelCard, ModelRegistry, load_model_cards
from app.governance.model_cli import model_group
from app.llm.prompt_card import recorded_and_actual_hash
from app.migrate import StaleSchema, require_current, upgrade
from app.safety.dashboard import safety_summary
from app.safety.events import CATEGORIES, SEVERITIES, ReportRefused, report_safety_event
from app.security.data_keys import data_sealer
from app.security.keys_cli import keys_group
from app.security.sessions_cli import sessions_group
from app.security.signing_key import signing_key
from app.settings import Settings
from app.writeback.provenance_cli import provenance_group
from app.wsgi_server import DEFAULT_THREADS, default_workers, serve


def run_evaluation(model: ModelCard, path: Path, size: int, seed: int) -> None:
    label = f"{model.id} {model.version}"
    with click.progressbar(length=size, label=f"{label}: generating cohort") as bar:
        cohort = generate(model.id, size, seed, bar.update)
    with click.progressbar(length=size, label=f"{label}: evaluating") as bar:
        evaluation = evaluate(model, cohort, bar.update)
    command = f"countersign eval {model.id} --version {model.version} --size {size} --seed {seed}"
    card = write_measured(path, measured_section(cohort, evaluation, command, date.today()))
    click.echo(f"{path}: {card.source_attributes.internal_validity}")


#: Commands that imitate a hospital, by name: "module:attribute" in the ``sandbox`` package.
SANDBOX_COMMANDS = {
    "demo": "sandbox.commands:demo_command",
    "mock-ehr": "sandbox.commands:mock_ehr_command",
    "client-token": "sandbox.commands:client_token_command",
    "integration-test": "sandbox.integration_check.command:integration_test_command",
}


class CountersignGroup(FlaskGroup):
    """Loads a sandbox command only when it is named, so that nothing of ``sandbox/`` is imported by
    the product's own commands, and an install without it still runs them (its commands are then
    not listed)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        sandbox = [name for name in SANDBOX_COMMANDS if self.get_command(ctx, name) is not None]
        return sorted({*super().list_commands(ctx), *sandbox})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in SANDBOX_COMMANDS:
            return super().get_command(ctx, name)
        module, _, attribute = SANDBOX_COMMANDS[name].partition(":")
        try:
            return getattr(importlib.import_module(module), attribute)
        except ModuleNotFoundError as error:
            if error.name and (error.name == "sandbox" or error.name.startswith("sandbox.")):
                return None
            raise


@click.group(cls=CountersignGroup, create_app=create_app, add_version_option=False)
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
    prepare_sqlite_file(database_url)  # else the check below would create it readable by all
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
    settings = Settings()
    data_sealer(settings)  # refuse here, not in each worker
    signing_key(settings)
    prepare_schema(settings.database_url or default_database_url(), migrate)
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


@main.command("worker")
@click.option("--once", is_flag=True, help="Deliver what is due now and seal the ledger, then exit.")
@MIGRATE_OPTION
@with_appcontext
def worker_command(once: bool, migrate: bool) -> None:
    """Drain the write-back outbox (run several at scale; leases keep them apart) and seal the
    ledger (one sealer at a time across hosts).

    Refuses to start on a database whose schema is not current (see `countersign db upgrade`)."""
    prepare_schema(current_app.config["COUNTERSIGN"].database_url or default_database_url(), migrate)
    worker = current_app.extensions[WORKER_KEY]
    if once:
        sealed = seal_now(current_app.extensions[DATABASE_KEY])
        click.echo(f"settled {worker.run_once()} outbox messages, sealed {sealed} ledger entries")
        return
    current_app.extensions[SEALER_KEY].start_in_background()
    click.echo(f"outbox worker {worker.owner} running, sealing the ledger (Ctrl-C stops it)")
    stop = threading.Event()
    try:
        worker.run_forever(stop)
    except KeyboardInterrupt:
        stop.set()


main.add_command(outbox_group)
main.add_command(keys_group)
main.add_command(sessions_group)
main.add_command(provenance_group)
main.add_command(model_group)


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
@click.option("--all", "every", is_flag=True, help="Evaluate every version of every model that has a cohort.")
@click.option(
    "--version", default=None, help="Only this version (of the one model named); default: every version."
)
@click.option("--size", default=DEFAULT_COHORT_SIZE, show_default=True, help="Synthetic patients.")
@click.option("--seed", default=DEFAULT_SEED, show_default=True, help="Seed of the cohort generator.")
@click.option(
    "--cards-dir",
    "cards_dirs",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Directory of model card files to read and update (repeatable); default: the shipped cards "
    "and COUNTERSIGN_MODEL_CARDS_DIR.",
)
def eval_command(
    models: tuple[str, ...],
    every: bool,
    version: str | None,
    size: int,
    seed: int,
    cards_dirs: tuple[Path, ...],
) -> None:
    """Evaluate MODELS on a labelled synthetic cohort and write the measured section of their cards.

    Every version has its own card and figures, a shadow version's included, so a version carries
    measured figures before anyone proposes it; a hospital's own (external) model is evaluated by
    calling its server once per synthetic patient. Sensitivity, PPV and specificity per finding (and
    AUROC and calibration by score band for risk scores), each with a 95 % interval, broken down by
    sex, age band, race and ethnicity. The card records the cohort's hash, size, seed and date, so
    anyone can rerun the command and compare.
    """
    registry = load_model_cards(*(cards_dirs or (CARDS_DIRECTORY, Settings().model_cards_dir)))
    known = sorted(model_id for model_id in registry.ids() if model_id in GENERATORS)
    chosen = known if every else list(models)
    unknown = sorted(set(chosen) - set(known))
    if not chosen or unknown:
        raise click.UsageError(f"name models to evaluate (or --all); known: {', '.join(known)}")
    if version is not None and len(chosen) != 1:
        raise click.UsageError("--version needs exactly one model")
    for model_id in chosen:
        for model in _versions_to_evaluate(registry, model_id, version):
            run_evaluation(model, registry.path(model), size, seed)


def _versions_to_evaluate(registry: ModelRegistry, model_id: str, version: str | None) -> list[ModelCard]:
    versions = [card for card in registry.versions(model_id) if version in (None, card.version)]
    if not versions:
        raise click.BadParameter(f"{model_id} has no version {version}", param_hint="--version")
    return [card for card in versions if evaluable(card)]


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
@click.option("--full", is_flag=True, help="Re-verify every entry, not only those after the checkpoint.")
@click.option(
    "--jobs",
    default=os.cpu_count() or 1,
    show_default=True,
    type=click.IntRange(1),
    help="Processes that walk the chain side by side (1: all in this one).",
)
@with_appcontext
def audit_verify_command(full: bool, jobs: int) -> None:
    """Verify the ledger; exit 1 naming the first broken entry.

    Checks the entries sealed since the last checkpoint (all of them with --full) against the
    chain and its seals, every unsealed entry against its MAC, and every ledgered record for its
    entry; then moves the checkpoint. Prints the last seal's position and hash: kept elsewhere,
    they show later that nothing up to them was rewritten or cut off."""
    started = time.perf_counter()
    result = verify_from_checkpoint(current_app.extensions[DATABASE_KEY], full, _progress, jobs)
    if not result.intact:
        click.echo(f"ledger broken at {result.broken_at}: {result.reason}", err=True)
        raise SystemExit(1)
    since = f" after the checkpoint at position {result.since}" if result.since else ""
    click.echo(f"ledger intact: {result.entries} entries{since} ({result.unsealed} not sealed yet)")
    click.echo(f"sealed head: position {result.position}, hash {result.head}")
    seconds = time.perf_counter() - started
    if result.entries:
        click.echo(f"verified in {seconds:.1f} s ({result.entries / seconds:,.0f} entries/s)", err=True)


def _progress(entries: int) -> None:
    click.echo(f"... {entries} entries verified", err=True)


if __name__ == "__main__":
    main()
