"""``countersign demo``: the service, a real FHIR test server and a trusted demo client, on loopback."""

from __future__ import annotations

import click

from app import create_app
from app.audit.fhir_writer import WriteBackServer
from app.db import INSTANCE_DIR, default_database_url
from app.demo_client import ensure_key, trusted_client
from app.fhir_test_server import FhirTestServer
from app.migrate import upgrade
from app.settings import Settings
from app.wsgi_server import DEFAULT_THREADS, default_workers, serve


def run_demo(host: str, port: int) -> None:
    base_url = f"http://{host}:{port}"
    environment = Settings()
    database_url = environment.database_url or default_database_url()
    click.echo("[1/4] applying database migrations")
    upgrade(database_url)
    click.echo("[2/4] starting the FHIR R4 test server")
    with FhirTestServer() as fhir:
        click.echo(f"      FHIR server: {fhir.base_url}")
        click.echo("[3/4] registering the demo CDS client (ES384 key in instance/) and write-back")
        key_path = ensure_key(INSTANCE_DIR)
        settings = environment.model_copy(
            update={
                "public_base_url": base_url,
                "database_url": database_url,
                "trusted_clients": [*environment.trusted_clients, trusted_client(key_path)],
                "writeback_servers": [
                    *environment.writeback_servers,
                    WriteBackServer(base_url=fhir.base_url),
                ],
                "writeback_default_server": environment.writeback_default_server or fhir.base_url,
            }
        )
        click.echo("[4/4] starting Countersign")
        click.echo(f"      discovery:  {base_url}/cds-services")
        click.echo(f"      token:      countersign client-token --aud {base_url}/cds-services")
        click.echo(f"Countersign is running at {base_url}/cds-services  (Ctrl-C stops everything)")
        serve(lambda: create_app(settings), f"{host}:{port}", default_workers(), DEFAULT_THREADS)
