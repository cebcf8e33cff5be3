"""The ``countersign`` command as an operator meets it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from joserfc.jwk import ECKey
from sqlalchemy import create_engine, inspect

from app.cli import main
from app.db import INSTANCE_DIR
from app.migrate import upgrade
from sandbox.demo_client import DEMO_ISSUER, ensure_key, public_jwks
from tests.tokens import verified


def test_help_explains_every_command():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "db", "demo", "client-token"):
        assert command in result.output
    serve_help = CliRunner().invoke(main, ["serve", "--help"]).output
    assert "--bind" in serve_help and "--workers" in serve_help


def test_db_upgrade_creates_the_schema(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("COUNTERSIGN_DATABASE_URL", url)
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert "card_set" in inspect(create_engine(url)).get_table_names()


def test_client_token_is_signed_by_the_demo_key_for_the_given_audience():
    audience = "http://127.0.0.1:8000/cds-services"
    result = CliRunner().invoke(main, ["client-token", "--aud", audience])
    assert result.exit_code == 0
    key = ECKey.import_key(public_jwks(ensure_key(INSTANCE_DIR))["keys"][0])
    assert verified(result.output.strip(), key, "ES384", audience).claims["iss"] == DEMO_ISSUER


def _start(command: list[str], url: str) -> subprocess.CompletedProcess:
    """The real console script, as an operator starts it; a process that starts serving is a failure."""
    env = os.environ | {"COUNTERSIGN_DATABASE_URL": url, "COUNTERSIGN_OUTBOX_IN_PROCESS": "false"}
    script = Path(sys.executable).parent / "countersign"
    return subprocess.run([script, *command], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("command", [["serve", "--bind", "127.0.0.1:0"], ["worker", "--once"]])
def test_serve_and_worker_refuse_an_unmigrated_database_and_name_the_fix(tmp_path, command):
    result = _start(command, f"sqlite:///{tmp_path / 'new.db'}")
    assert result.returncode != 0
    assert "database schema is at revision none" in result.stderr
    assert "countersign db upgrade" in result.stderr


def test_a_schema_one_migration_behind_is_refused_and_migrate_brings_it_current(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade(url, "0005")
    refused = _start(["worker", "--once"], url)
    assert refused.returncode != 0 and "at revision 0005" in refused.stderr
    migrated = _start(["worker", "--once", "--migrate"], url)
    assert migrated.returncode == 0, migrated.stderr
    assert "settled 0 outbox messages" in migrated.stdout
