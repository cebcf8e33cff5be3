"""The ``countersign integration-test`` command: options, then the check, then the report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from app.settings import DEFAULT_SCOPE
from sandbox.integration_check.credentials import CHECK_SCOPE, CredentialsError, write_back_server
from sandbox.integration_check.runner import CheckOptions, run_check


@click.command("integration-test")
@click.option(
    "--fhir-url",
    required=True,
    help="Base URL of the FHIR R4 server to check, e.g. http://localhost:8080/fhir.",
)
@click.option(
    "--auth",
    type=click.Choice(["none", "bearer", "backend-services"]),
    default="none",
    show_default=True,
    help="How Countersign authenticates to the server, as in COUNTERSIGN_WRITEBACK_SERVERS.",
)
@click.option(
    "--token", envvar="COUNTERSIGN_CHECK_TOKEN", help="bearer: the token (or COUNTERSIGN_CHECK_TOKEN)."
)
@click.option("--client-id", help="backend-services: the registered client id.")
@click.option("--token-url", help="backend-services: the authorization server's token endpoint.")
@click.option(
    "--private-key",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="backend-services: PEM private key that signs the client assertion.",
)
@click.option("--kid", help="backend-services: key id of that key in the client's JWKS.")
@click.option(
    "--algorithm",
    type=click.Choice(["RS384", "ES384"]),
    default="RS384",
    show_default=True,
    help="backend-services: how the client assertion is signed.",
)
@click.option(
    "--scope",
    default=DEFAULT_SCOPE,
    help="backend-services: scope of the write-back's token [default: the system/*.crs scopes it needs].",
)
@click.option(
    "--check-scope",
    default=CHECK_SCOPE,
    show_default=True,
    help="backend-services: scope of the check's own requests (load, the EHR's writes, searches, cleanup).",
)
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for the write-back.")
@click.option(
    "--cleanup", is_flag=True, help="Delete the test patients and everything written about them afterwards."
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (progress stays on stderr).")
def integration_test_command(
    fhir_url: str,
    auth: str,
    token: str | None,
    client_id: str | None,
    token_url: str | None,
    private_key: Path | None,
    kid: str | None,
    algorithm: str,
    scope: str,
    check_scope: str,
    timeout: float,
    cleanup: bool,
    as_json: bool,
) -> None:
    """Check that a FHIR R4 server (your HAPI sandbox, say) takes Countersign's write-back.

    Loads three synthetic test patients (every resource tagged HTEST, ids unique to the run), starts
    Countersign in this process on a free loopback port writing back to --fhir-url, calls every
    service's hook as an EHR would (patient-view, order-select, order-sign, encounter-discharge),
    accepts one card, overrides one with a reason and signs the held discharge-summary draft.
    Then it waits for the write-back and checks, step by step, that each Provenance, AuditEvent,
    Task, DocumentReference and Device is on the server, found by the searches a CMIO would use,
    and valid by the server's $validate (skipped where the server does not offer it).

    Prints a table (or --json) with a fix hint on each failure; exits 0 only if every check passes.

    \b
    Examples:
      countersign integration-test --fhir-url http://localhost:8080/fhir --cleanup
      countersign integration-test --fhir-url https://ehr.example/fhir --auth backend-services \\
        --client-id countersign-writer --token-url https://ehr.example/token \\
        --private-key writer.pem --kid w1 --json
    """
    try:
        server = write_back_server(
            fhir_url,
            auth,
            token=token,
            client_id=client_id,
            token_url=token_url,
            private_key=private_key,
            kid=kid,
            algorithm=algorithm,
            scope=scope,
        )
    except CredentialsError as error:
        raise click.UsageError(str(error)) from None
    report = run_check(CheckOptions(server, timeout, cleanup, check_scope))
    click.echo(json.dumps(report.as_json(), indent=2) if as_json else report.table())
    raise SystemExit(0 if report.passed else 1)
