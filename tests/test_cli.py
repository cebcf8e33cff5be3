"""The ``countersign`` command as an operator meets it."""

from __future__ import annotations

import jwt
from click.testing import CliRunner
from sqlalchemy import create_engine, inspect

from app.cli import main
from app.db import INSTANCE_DIR
from app.demo_client import DEMO_ISSUER, ensure_key, public_jwks


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
    key = jwt.PyJWK(public_jwks(ensure_key(INSTANCE_DIR))["keys"][0])
    claims = jwt.decode(result.output.strip(), key.key, algorithms=["ES384"], audience=audience)
    assert claims["iss"] == DEMO_ISSUER
