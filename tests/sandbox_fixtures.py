"""Shared set-up of the sandbox EHR tests: Countersign on a real HTTP port trusting the sandbox
EHR's key, write-back to the real FHIR test server, and a fresh copy of the synthetic cohort."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from app import WORKER_KEY, create_app
from app.migrate import upgrade
from app.settings import Settings, WriteBackServer
from cds_hooks.auth import TrustedClient
from sandbox.ehr import SandboxConfig
from sandbox.ehr import create_app as create_sandbox_app
from sandbox.ehr.cds_client import SANDBOX_ISSUER, ClientIdentity
from sandbox.ehr.synthetic.loader import load_cohort
from tests.live_server import LiveServer


@pytest.fixture(scope="session")
def identity(tmp_path_factory: pytest.TempPathFactory) -> ClientIdentity:
    return ClientIdentity.in_directory(tmp_path_factory.mktemp("sandbox-key"))


@pytest.fixture
def fresh_patient(fhir_server: str) -> Callable[[str], str]:
    """Loads a fresh copy of one synthetic patient (ids end with a suffix of this test) and
    returns its id: tests never see each other's orders on the shared FHIR server."""
    tail = f"-{uuid.uuid4().hex[:8]}"

    def load(story: str) -> str:
        load_cohort(fhir_server, suffix=tail, only={story})
        return f"{story}{tail}"

    return load


def countersign_settings(
    make_settings: Callable[..., Settings],
    url: str,
    fhir_server: str,
    trusted: TrustedClient,
    **extra: object,
) -> Settings:
    return make_settings(
        public_base_url=url,
        trusted_clients=[trusted],
        writeback_servers=[WriteBackServer(base_url=fhir_server)],
        **extra,
    )


@pytest.fixture
def countersign(
    make_settings: Callable[..., Settings], fhir_server: str, identity: ClientIdentity
) -> Iterator[LiveServer]:
    """Countersign over HTTP; its outbox is drained by the test (``drain_outbox``)."""
    server = LiveServer()
    trusted = TrustedClient(iss=SANDBOX_ISSUER, jwks=identity.jwks())
    settings = countersign_settings(make_settings, server.url, fhir_server, trusted, outbox_in_process=False)
    upgrade(settings.database_url)
    server.serve(create_app(settings))
    yield server
    server.stop()


def drain_outbox(countersign: LiveServer, rounds: int = 50) -> None:
    worker = countersign.app.extensions[WORKER_KEY]
    for _ in range(rounds):
        if worker.run_once() == 0:
            return


@pytest.fixture
def sandbox(countersign: LiveServer, fhir_server: str, identity: ClientIdentity) -> Flask:
    return create_sandbox_app(SandboxConfig(fhir_server, f"{countersign.url}/cds-services", identity))
