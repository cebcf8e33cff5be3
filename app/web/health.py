"""Liveness and readiness probes for the orchestrator and the load balancer.

``/healthz`` says only that the process answers (restart it if not). ``/readyz`` says whether it
should get traffic: the database answers, its schema is at the newest migration, the model cards
on disk still validate and cover every model this process serves, and no ledger entry has waited
for its seal longer than ``COUNTERSIGN_LEDGER_UNSEALED_LIMIT_SECONDS`` (no sealer keeps up: the
window in which a deleted entry is caught only by its record grows). Failures name the check,
never the error text (a database error can quote its URL).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import lru_cache

from flask import Blueprint, Response, current_app, jsonify
from ruamel.yaml import YAMLError
from sqlalchemy import Engine, text
from sqlalchemy.exc import SQLAlchemyError

from app.audit.ledger import unsealed_backlog
from app.db import DATABASE_KEY, utcnow
from app.files.validated import InvalidFile
from app.governance.model_card import MODEL_CARDS_KEY, CardFiles, ModelRegistry, load_model_cards
from app.migrate import is_current

log = logging.getLogger(__name__)
bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Response:
    engine: Engine = current_app.extensions[DATABASE_KEY]
    limit = current_app.config["COUNTERSIGN"].ledger_unsealed_limit_seconds
    sealing: dict = {"limit_seconds": limit}
    checks = {
        "database": _check("database", lambda: _database_answers(engine)),
        "migrations": _check("migrations", lambda: is_current(engine)),
        "registry": _check("registry", _registry_valid),
        "ledger": _check("ledger", lambda: _sealed_in_time(engine, sealing)),
    }
    ready = all(result == "ok" for result in checks.values())
    response = jsonify({"status": "ready" if ready else "not-ready", "checks": checks, "ledger": sealing})
    response.status_code = 200 if ready else 503
    return response


def _check(name: str, probe: Callable[[], bool]) -> str:
    try:
        return "ok" if probe() else "failed"
    except (SQLAlchemyError, OSError, ValueError, InvalidFile, YAMLError):
        log.warning("readiness check failed", exc_info=True, extra={"kind": name})
        return "failed"


def _database_answers(engine: Engine) -> bool:
    with engine.connect() as connection:
        return connection.execute(text("SELECT 1")).scalar() == 1


def _sealed_in_time(engine: Engine, report: dict) -> bool:
    """Fills ``report`` with the unsealed backlog; past the limit it says why the check fails."""
    with engine.connect() as connection:
        backlog = unsealed_backlog(connection)
    age = backlog.age(utcnow())
    report |= {"unsealed_entries": backlog.entries, "oldest_unsealed_seconds": round(age, 3)}
    if age <= report["limit_seconds"]:
        return True
    report["reason"] = "ledger entries wait longer than the limit for their seal: is a sealer running?"
    return False


def _registry_valid() -> bool:
    """A card edited into an invalid state, or removed, takes the process out of rotation."""
    served: ModelRegistry = current_app.extensions[MODEL_CARDS_KEY]
    files = CardFiles.now(served.files.directories)
    on_disk = served if files == served.files else _registry_on_disk(files)
    return bool(list(served)) and all(on_disk.card(card.id, card.version) is not None for card in served)


@lru_cache(maxsize=4)
def _registry_on_disk(files: CardFiles) -> ModelRegistry:
    """The cards as they are now on disk, parsed again only when ``files`` change: parsing every
    card on every probe cost about 140 ms of a worker's CPU."""
    return load_model_cards(*files.directories)
