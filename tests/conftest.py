"""Shared fixtures: a real app on a real SQLite database, a trusted client key, signed tokens."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from joserfc import jwt
from joserfc.jwk import ECKey, Key
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from app import create_app
from app.migrate import upgrade
from app.security.signing_key import ensure_signing_key
from app.settings import Settings
from cds_hooks.auth import TrustedClient
from sandbox.fhir_test_server import FhirTestServer, external_base_url
from sandbox.mock_ehr_auth import MockEhr
from smart_launch.sealing import generate_key
from tests.smart_helpers import CALLBACK, PATIENT, mock_ehr
from tests.writeback_helpers import put

POSTGRES_URL = os.environ.get(
    "COUNTERSIGN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BASE_URL = "http://localhost"
ISSUER = "https://ehr.test.example/"
KID = "test-es384"
pytest_plugins = ["tests.sandbox_fixtures", "tests.hapi_fixture", "tests.fhir_proxy"]
#: The data key of every app the tests start (fixtures, ``Settings()``, CLI runs, child processes):
#: set in the environment once, here, as an operator would.
DATA_KEY = generate_key()
os.environ["COUNTERSIGN_DATA_KEYS"] = DATA_KEY
#: Likewise the key that MACs ledger entries. The apps seal only when a test asks (``seal_now``, or
#: a ``Sealer`` of its own): a sealing thread per app would outlive its test and poll its database.
LEDGER_KEY = generate_key()
os.environ["COUNTERSIGN_LEDGER_KEYS"] = LEDGER_KEY
os.environ["COUNTERSIGN_LEDGER_SEAL_IN_PROCESS"] = "false"
#: Likewise the bearer token ``/metrics`` asks for; ``METRICS_AUTH`` is the scraper's header.
METRICS_TOKEN = secrets.token_urlsafe(24)
os.environ["COUNTERSIGN_METRICS_TOKEN"] = METRICS_TOKEN
METRICS_AUTH = {"Authorization": f"Bearer {METRICS_TOKEN}"}
#: Likewise the key that signs every Provenance they write, in a directory gone when the run ends.
_SIGNING_KEY_DIR = tempfile.mkdtemp(prefix="countersign-signing-key-")
atexit.register(shutil.rmtree, _SIGNING_KEY_DIR, ignore_errors=True)
SIGNING_KEY_PATH = ensure_signing_key(Path(_SIGNING_KEY_DIR) / "signing-key.pem")
os.environ["COUNTERSIGN_SIGNING_KEY_PATH"] = str(SIGNING_KEY_PATH)


@pytest.fixture(scope="session")
def client_key() -> ECKey:
    return ECKey.generate_key("P-384")


@pytest.fixture(scope="session")
def client_jwks(client_key: ECKey) -> dict:
    return {"keys": [client_key.as_dict(private=False, kid=KID, alg="ES384", use="sig")]}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """SQLite by default; modules that must prove both databases override this with ``both_databases``."""
    return f"sqlite:///{tmp_path / 'countersign.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def both_databases(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'countersign.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def make_settings(database_url: str, client_jwks: dict) -> Callable[..., Settings]:
    def build(**overrides: object) -> Settings:
        values: dict = {
            "database_url": database_url,
            "public_base_url": BASE_URL,
            "trusted_clients": [TrustedClient(iss=ISSUER, jwks=client_jwks)],
            "fhir_timeout_seconds": 2.0,
        }
        values.update(overrides)
        return Settings(**values)

    return build


@pytest.fixture
def make_app(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., Flask]]:
    """Apps on migrated databases; their governance watchers and shadow processes stop before the
    database goes away."""
    built: list[Flask] = []

    def build(**overrides: object) -> Flask:
        settings = make_settings(**overrides)
        upgrade(settings.database_url)
        built.append(create_app(settings))
        return built[-1]

    yield build
    for app in built:
        backend = app.extensions["cds_hooks"].backend
        backend.governance.watcher.stop()
        backend.shadow.stop()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def sign(client_key: ECKey) -> Callable[..., str]:
    """Sign a CDS client JWT; keyword arguments override claims, ``headers`` the JOSE header."""

    def build(
        aud: str | list[str], *, headers: dict | None = None, key: Key | None = None, **claims: object
    ) -> str:
        now = int(time.time())
        payload = {"iss": ISSUER, "aud": aud, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        payload.update(claims)
        payload = {name: value for name, value in payload.items() if value is not None}
        header = {"alg": "ES384", "kid": KID, "typ": "JWT"} | (headers or {})
        return jwt.encode(header, payload, key or client_key, algorithms=[header["alg"]])

    return build


@pytest.fixture
def auth(sign: Callable[..., str]) -> Callable[[str], dict]:
    """Authorization header for one call to ``path`` (a fresh jti each time)."""

    def build(path: str) -> dict:
        return {"Authorization": f"Bearer {sign(BASE_URL + path)}"}

    return build


@pytest.fixture(scope="session")
def fhir_server() -> Iterator[str]:
    """Base URL of a real FHIR R4 server: ours in Node, or COUNTERSIGN_TEST_FHIR_BASE_URL."""
    external = external_base_url()
    if external:
        yield external
        return
    with FhirTestServer() as server:
        yield server.base_url


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh schema of its own in the PostgreSQL test database (127.0.0.1:5432 on the CI machine),
    so that concurrent test runs sharing the database never see each other's tables."""
    schema = f"cs_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    try:
        with admin.begin() as connection:
            connection.execute(text(f"CREATE SCHEMA {schema}"))
    except OperationalError:
        admin.dispose()
        unavailable = pytest.fail if os.environ.get("CI") == "true" else pytest.skip
        unavailable(f"no PostgreSQL at {POSTGRES_URL}")
    yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    admin.dispose()


@pytest.fixture
def ehr(fhir_server: str) -> Iterator[MockEhr]:
    """The mock EHR's SMART authorization server in front of the FHIR server, with the test patient."""
    put(fhir_server, PATIENT)
    with mock_ehr(fhir_server, CALLBACK) as running:
        yield running
