"""The ``countersign`` command: serve, migrate, run the demo, sign a demo client token."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from app import DATABASE_KEY, create_app
from app.db import INSTANCE_DIR
from app.demo import run_demo
from app.demo_client import client_token, ensure_key
from app.migrate import upgrade
from app.wsgi_server import DEFAULT_THREADS, default_workers, serve


@click.group(cls=FlaskGroup, create_app=create_app, add_version_option=False)
def main() -> None:
    """Countersign: governed AI decision support for FHIR EHRs.

    Configuration comes from COUNTERSIGN_* environment variables (see the README).
    """


@main.command("serve")
@click.option("--bind", default="127.0.0.1:8000", show_default=True, help="Address:port to listen on.")
@click.option("--workers", default=default_workers(), show_default=True, help="Worker processes.")
@click.option("--threads", default=DEFAULT_THREADS, show_default=True, help="Threads per worker.")
def serve_command(bind: str, workers: int, threads: int) -> None:
    """Run the service under gunicorn (put a TLS-terminating proxy in front in production)."""
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
def demo_command(host: str, port: int) -> None:
    """Run the product on embedded defaults: FHIR test server, database, trusted demo client."""
    run_demo(host, port)


@main.command("client-token")
@click.option("--aud", required=True, help="Exact URL of the endpoint the token is for.")
def client_token_command(aud: str) -> None:
    """Print a one-use JWT signed by the demo CDS client's key (for curl against the demo)."""
    click.echo(client_token(ensure_key(INSTANCE_DIR), aud))
