"""The ``countersign`` commands that imitate a hospital: the demo, the mock SMART EHR, a demo client's
token. ``app.cli`` loads them by name when they are used, so a production install runs without
``sandbox/``."""

from __future__ import annotations

import click

from app.db import INSTANCE_DIR
from sandbox.demo import FHIR_CHOICES, run_demo
from sandbox.demo_client import client_token, ensure_key
from sandbox.mock_ehr_auth.runner import run_mock_ehr
from smart_launch.tenants import TokenEndpointAuthMethod


@click.command("demo")
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
@click.option(
    "--smart-client-auth",
    type=click.Choice(["private_key_jwt", "client_secret_basic"]),
    default="private_key_jwt",
    show_default=True,
    help="How Countersign authenticates at the mock EHR's token endpoint.",
)
def demo_command(
    host: str,
    port: int,
    ehr_port: int,
    auth_port: int,
    fhir_choice: str,
    fhir_url: str | None,
    smart_client_auth: TokenEndpointAuthMethod,
) -> None:
    """Run the product on embedded defaults: FHIR test server with synthetic patients, the sandbox
    EHR as a trusted CDS client and SMART EHR, and Countersign writing back to the same FHIR server."""
    run_demo(host, port, ehr_port, auth_port, fhir_choice, fhir_url, smart_client_auth)


@click.command("mock-ehr")
@click.option("--fhir-base", required=True, help="FHIR server the mock EHR fronts (the FHIR test server).")
@click.option("--port", default=9000, show_default=True, help="Loopback port of the mock EHR.")
@click.option("--redirect-uri", default="http://localhost:8000/app/callback", show_default=True)
@click.option("--client-secret", envvar="COUNTERSIGN_MOCK_EHR_CLIENT_SECRET", required=True)
def mock_ehr_command(fhir_base: str, port: int, redirect_uri: str, client_secret: str) -> None:
    """Run the mock SMART EHR (authorization server + FHIR proxy) for the demo; never in production."""
    run_mock_ehr(fhir_base, redirect_uri, client_secret, port)


@click.command("client-token")
@click.option("--aud", required=True, help="Exact URL of the endpoint the token is for.")
def client_token_command(aud: str) -> None:
    """Print a one-use JWT signed by the demo CDS client's key (for curl against the demo)."""
    click.echo(client_token(ensure_key(INSTANCE_DIR), aud))
