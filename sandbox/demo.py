"""``countersign demo``: a real FHIR test server with synthetic patients, the sandbox EHR, the mock
EHR authorization server (SMART), and Countersign trusting the EHR's key and writing back to the
same FHIR server, all on loopback.

Countersign is served under the other loopback name than the EHR (localhost vs 127.0.0.1), so the
app in the chart's iframe is cross-site, as it is in a hospital.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager as ContextManager
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click
import requests
from pydantic import SecretStr

from app import create_app
from app.db import INSTANCE_DIR, default_database_url
from app.migrate import upgrade
from app.security.signing_key import ensure_signing_key, write_private
from app.settings import Settings, WriteBackServer
from app.web.jwks import JWKS_PATH
from app.wsgi_server import DEFAULT_THREADS, default_workers, serve
from cds_hooks.auth import TrustedClient
from sandbox import demo_smart
from sandbox.demo_client import ensure_key, trusted_client
from sandbox.ehr.cds_client import SANDBOX_ISSUER, ClientIdentity
from sandbox.ehr.launcher import SmartLauncher
from sandbox.ehr.synthetic.loader import load_cohort
from sandbox.fhir_test_server import FhirTestServer
from sandbox.hapi_server import HapiServer, unavailable_reason
from sandbox.server_process import ServerProcess
from smart_launch.sealing import generate_key
from smart_launch.tenants import SmartEhr, TokenEndpointAuthMethod

STEPS = 7
DATA_KEY_FILE = "data-key"
LEDGER_KEY_FILE = "ledger-key"
SIGNING_KEY_FILE = "provenance-signing-key.pem"
QUIET_GUNICORN = {"loglevel": "warning"}


def _step(number: int, text: str) -> None:
    click.echo(f"[{number}/{STEPS}] {text}")


FHIR_CHOICES = ("embedded", "hapi")


def run_demo(
    host: str,
    port: int,
    ehr_port: int,
    auth_port: int,
    fhir_choice: str = "embedded",
    fhir_url: str | None = None,
    smart_auth: TokenEndpointAuthMethod = "private_key_jwt",
) -> None:
    base_url = f"http://{other_loopback_name(host)}:{port}"
    ehr_url = f"http://{host}:{ehr_port}"
    environment = Settings()
    database_url = environment.database_url or default_database_url()
    _step(1, "applying database migrations")
    upgrade(database_url)
    with _fhir_server(fhir_choice, fhir_url) as fhir:
        click.echo(f"      FHIR server: {fhir.base_url}")
        _step(3, "loading the synthetic patients (FHIR transactions)")
        patients = load_cohort(fhir.base_url)
        click.echo(f"      {len(patients)} patients, {sum(len(p.resources) for p in patients)} resources")
        _step(4, "starting the mock EHR authorization server (SMART launch) in front of the FHIR server")
        secret = secrets.token_urlsafe(32)
        auth_url = f"http://{host}:{auth_port}"
        with _mock_ehr(host, auth_port, fhir.base_url, base_url, secret):
            click.echo(f"      SMART iss: {demo_smart.iss(auth_url)}")
            _step(5, "starting the sandbox EHR (its own ES384 key, published as a JWKS)")
            ClientIdentity.in_directory(INSTANCE_DIR)
            launcher = demo_smart.launcher(auth_url, base_url)
            with _sandbox_ehr(host, ehr_port, fhir.base_url, f"{base_url}/cds-services", launcher):
                click.echo(f"      sandbox EHR: {ehr_url}/   JWKS: {ehr_url}/.well-known/jwks.json")
                _step(6, "trusting the sandbox EHR (CDS client, SMART EHR); write-back to the FHIR server")
                smart_ehr = demo_smart.smart_ehr(auth_url, secret, ehr_url, smart_auth)
                click.echo(f"      SMART client auth: {smart_auth}  (our JWKS: {base_url}{JWKS_PATH})")
                settings = _settings(environment, base_url, database_url, fhir.base_url, ehr_url, smart_ehr)
                _step(7, "starting Countersign")
                click.echo(f"      CDS discovery: {base_url}/cds-services  (needs a signed JWT)")
                click.echo(f"      SMART app: {base_url}/app/  (launch it from a chart's Countersign button)")
                token = settings.metrics_token.get_secret_value()
                click.echo(f"      metrics: curl -H 'Authorization: Bearer {token}' {base_url}/metrics")
                click.echo(f"Open the sandbox EHR: {ehr_url}/  (Ctrl-C stops everything)")
                serve(
                    lambda: create_app(settings),
                    f"{host}:{port}",
                    default_workers(),
                    DEFAULT_THREADS,
                    QUIET_GUNICORN,
                )


@dataclass(frozen=True)
class ExistingServer:
    base_url: str


@contextmanager
def _fhir_server(choice: str, url: str | None) -> Iterator[ServerProcess | ExistingServer]:
    """The FHIR server the demo's EHR keeps its record on: one the user already runs (open, no
    authentication), the HAPI FHIR server, or the embedded test server (the fast default)."""
    if url:
        _step(2, f"using your FHIR R4 server at {url}")
        yield ExistingServer(url.rstrip("/"))
        return
    if choice == "hapi":
        reason = unavailable_reason()
        if reason:
            raise click.ClickException(f"the HAPI FHIR server is not available: {reason}")
        _step(2, "starting the HAPI FHIR server (JPA, in memory; about 15 s)")
        server: ServerProcess = HapiServer()
    else:
        _step(2, "starting the FHIR R4 test server")
        server = FhirTestServer()
    with server:
        yield server


def other_loopback_name(host: str) -> str:
    """The loopback name the EHR does not use: the app in the EHR's iframe is then cross-site."""
    return "127.0.0.1" if host == "localhost" else "localhost"


def _settings(
    environment: Settings,
    base_url: str,
    database_url: str,
    fhir_url: str,
    ehr_url: str,
    smart_ehr: SmartEhr,
) -> Settings:
    sandbox = TrustedClient(iss=SANDBOX_ISSUER, jwks_url=f"{ehr_url}/.well-known/jwks.json")
    return environment.model_copy(
        update={
            "public_base_url": base_url,
            "database_url": database_url,
            "trusted_clients": [
                *environment.trusted_clients,
                trusted_client(ensure_key(INSTANCE_DIR)),
                sandbox,
            ],
            "writeback_servers": [*environment.writeback_servers, WriteBackServer(base_url=fhir_url)],
            "writeback_default_server": environment.writeback_default_server or fhir_url,
            "outbox_in_process": True,
            "smart_ehrs": [*environment.smart_ehrs, smart_ehr],
            "smart_client_keys": [*environment.smart_client_keys, demo_smart.client_key(INSTANCE_DIR)],
            "smart_allow_http_loopback": True,
            "data_keys": environment.data_keys or [demo_key(INSTANCE_DIR / DATA_KEY_FILE)],
            "ledger_keys": environment.ledger_keys or [demo_key(INSTANCE_DIR / LEDGER_KEY_FILE)],
            "signing_key_path": environment.signing_key_path
            or ensure_signing_key(INSTANCE_DIR / SIGNING_KEY_FILE),
            "metrics_token": environment.metrics_token or SecretStr(secrets.token_urlsafe(24)),
        }
    )


def demo_key(path: Path) -> SecretStr:
    """A demo key (data or ledger), made once and kept (mode 0600) so that a restarted demo still
    opens the sessions it sealed and verifies the ledger it wrote."""
    if not path.exists():
        write_private(path, generate_key().encode())
    return SecretStr(path.read_text().strip())


def _mock_ehr(host: str, port: int, fhir_url: str, app_url: str, secret: str) -> ContextManager[None]:
    """The mock EHR authorization server in a child process, out of gunicorn's master (run there as a
    thread, the forked workers took the whole graceful timeout to stop); the secret goes in its
    environment, not on its command line."""
    command = [sys.executable, "-m", "sandbox.demo_smart", "--fhir", fhir_url, "--app", app_url]
    command += ["--host", host, "--port", str(port)]
    environment = os.environ | {demo_smart.SECRET_ENV: secret}
    return _child("the mock EHR", command, f"http://{host}:{port}/jwks", environment)


def _sandbox_ehr(
    host: str, port: int, fhir_url: str, cds_url: str, launcher: SmartLauncher
) -> ContextManager[None]:
    users = [f"--launch-user={user.id}={user.label}" for user in launcher.users]
    command = [
        sys.executable,
        "-m",
        "sandbox.ehr.server",
        "--bind",
        f"{host}:{port}",
        "--fhir",
        fhir_url,
        "--cds",
        cds_url,
        "--key-dir",
        str(INSTANCE_DIR),
        "--smart-launches",
        launcher.launches_url,
        "--smart-app",
        launcher.app_launch_url,
        *users,
    ]
    return _child("the sandbox EHR", command, f"http://{host}:{port}/.well-known/jwks.json")


@contextmanager
def _child(
    name: str, command: list[str], health_url: str, environment: dict | None = None, timeout: float = 30
) -> Iterator[None]:
    """A child process, up once ``health_url`` answers, stopped with the demo (Ctrl-C, or any failure)."""
    process = subprocess.Popen(command, env=environment)
    try:
        _wait_until_up(name, health_url, process, timeout)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_up(name: str, url: str, process: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise click.ClickException(f"{name} exited with status {process.returncode}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise click.ClickException(f"{name} did not start within {timeout:g} s")
