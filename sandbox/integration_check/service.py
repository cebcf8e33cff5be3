"""Countersign itself, in this process, on a free loopback port, for the length of one check.

Self-contained: a temporary SQLite database with the migrations applied, a freshly generated ES384
key that the check's EHR signs its calls with (and the only client Countersign trusts), and
write-back to the server under test with the credentials given. The outbox is drained by the
check, not by a background thread, so that it can show progress and stop at its timeout.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from pydantic import SecretStr
from sqlalchemy import Engine

from app import DATABASE_KEY, WORKER_KEY, create_app
from app.migrate import upgrade
from app.security.signing_key import ensure_signing_key
from app.settings import Settings, WriteBackServer
from app.writeback.worker import OutboxWorker
from cds_hooks.auth import TrustedClient
from sandbox.demo_client import ensure_key
from sandbox.ehr.cds_client import ClientIdentity
from sandbox.mock_ehr_auth.runner import BackgroundServer
from smart_launch.sealing import generate_key

ISSUER = "https://integration-check.countersign.local"
KID = "integration-check-es384"
KEY_FILE = "integration-check-es384.pem"
#: Countersign's own log lines would interleave with the check's progress; its refusals are in
#: the report anyway, so only errors are logged.
LOG_LEVEL = "ERROR"


@dataclass(frozen=True)
class RunningCountersign:
    app: Flask
    url: str
    identity: ClientIdentity

    @property
    def settings(self) -> Settings:
        return self.app.config["COUNTERSIGN"]

    @property
    def services_url(self) -> str:
        return f"{self.url}/cds-services"

    @property
    def engine(self) -> Engine:
        return self.app.extensions[DATABASE_KEY]

    @property
    def worker(self) -> OutboxWorker:
        return self.app.extensions[WORKER_KEY]


class _LateApp:
    """The WSGI app the server forwards to, set once the port (hence the public URL) is known."""

    app: Callable | None = None

    def __call__(self, environ: dict, start_response: Callable) -> object:
        return self.app(environ, start_response)


@contextmanager
def running_countersign(server: WriteBackServer) -> Iterator[RunningCountersign]:
    """Countersign serving on ``127.0.0.1:<free port>``; everything it kept is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="countersign-check-") as directory:
        workdir = Path(directory)
        identity = ClientIdentity(ensure_key(workdir, KEY_FILE), ISSUER, KID)
        late = _LateApp()
        http = BackgroundServer(late)
        url = f"http://127.0.0.1:{http.port}"
        settings = _settings(workdir, url, identity, server)
        upgrade(settings.database_url)
        app = create_app(settings)
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        late.app = app
        try:
            with http:
                yield RunningCountersign(app, url, identity)
        finally:
            app.extensions[DATABASE_KEY].dispose()


def _settings(workdir: Path, url: str, identity: ClientIdentity, server: WriteBackServer) -> Settings:
    """The environment's settings (a model endpoint, say), with everything the check depends on
    replaced: its database, address, one trusted client, one write-back server, no SMART EHRs,
    a throw-away data key and Provenance signing key (they go with the run, as the database does)."""
    return Settings().model_copy(
        update={
            "database_url": f"sqlite:///{workdir / 'countersign.db'}",
            "public_base_url": url,
            "auth_disabled": False,
            "trusted_clients": [TrustedClient(iss=identity.issuer, jwks=identity.jwks())],
            "writeback_servers": [server],
            "writeback_default_server": server.key,
            "outbox_in_process": False,
            "outbox_base_delay_seconds": 0.5,
            "smart_ehrs": [],
            "data_keys": [SecretStr(generate_key())],
            "signing_key_path": ensure_signing_key(workdir / "signing-key.pem"),
            "log_level": LOG_LEVEL,
        }
    )
