"""Countersign: governed AI decision support for FHIR EHRs. ``create_app`` is the application factory."""

from __future__ import annotations

from pathlib import Path

from flask import Flask
from sqlalchemy import Engine

import cds_hooks
import smart_launch
from app import observability
from app.audit import ledger
from app.db import DATABASE_KEY, INSTANCE_DIR, create_db_engine, default_database_url
from app.governance.model_card import MODEL_CARDS_KEY
from app.pages import blueprint as pages
from app.security import sign_in_audit
from app.security.data_keys import data_sealer
from app.security.signing_key import signing_key
from app.serving.backend import GovernedBackend
from app.serving.catalogue import load_catalogue
from app.settings import Settings
from app.web import api, hardening, health, jwks, openapi, rate_limit
from app.web.json_provider import OrjsonProvider
from app.writeback.worker import outbox_worker
from cds_hooks.auth import ClientAuthenticator, KeySetCache
from cds_hooks.prefetch import ReaderSettings

__all__ = ["DATABASE_KEY", "SEALER_KEY", "WORKER_KEY", "create_app"]
STATIC_FOLDER = Path(__file__).resolve().parent.parent / "static"
WORKER_KEY = "outbox_worker"
SEALER_KEY = "ledger_sealer"


def create_app(settings: Settings | None = None) -> Flask:
    """Build the WSGI application from ``settings`` (default: the environment)."""
    settings = settings or Settings()
    app = Flask(__name__, static_folder=str(STATIC_FOLDER), instance_path=str(INSTANCE_DIR))
    app.json = OrjsonProvider(app)
    app.config["COUNTERSIGN"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    engine = create_db_engine(settings.database_url or default_database_url(), settings.database_pool)
    app.extensions[DATABASE_KEY] = engine
    models, catalogue = load_catalogue(settings)
    app.extensions[MODEL_CARDS_KEY] = models
    backend = GovernedBackend(catalogue, engine, settings)
    observability.init_app(app, settings, frozenset(backend.catalogue))
    rate_limit.init_app(app, settings)
    smart_config = _smart_config(settings, engine)
    hardening.init_app(app, settings, smart_config.frame_ancestors())
    cds_hooks.init_app(app, _cds_hooks_config(settings, backend))
    smart_launch.init_app(app, smart_config)
    sign_in_audit.init_app(app)
    app.register_blueprint(pages.bp)
    app.register_blueprint(health.bp)
    app.register_blueprint(api.bp)
    jwks.init_app(app, signing_key(settings), [key.jwk for key in settings.smart_client_keys])
    openapi.init_app(app, settings.base_url)
    worker = outbox_worker(settings, engine, models)
    app.extensions[WORKER_KEY] = worker
    if settings.outbox_in_process and settings.writeback_servers:
        worker.start_in_background()
    _start_ledger(app, settings, engine)
    return app


def _start_ledger(app: Flask, settings: Settings, engine: Engine) -> None:
    """Appends MAC with the keys bound to the engine; the sealer chains what they write."""
    ledger.bind_keys(engine, ledger.ledger_keys(settings))
    sealer = ledger.Sealer(engine, settings.ledger_seal_interval_seconds)
    app.extensions[SEALER_KEY] = sealer
    if settings.ledger_seal_in_process:
        sealer.start_in_background()


def _smart_config(settings: Settings, engine: Engine) -> smart_launch.SmartConfig:
    return smart_launch.SmartConfig(
        engine=engine,
        ehrs=settings.smart_ehrs,
        public_base_url=settings.base_url,
        landing=pages.landing,
        sealer=data_sealer(settings),
        standalone_iss=settings.smart_standalone_iss,
        allow_http_loopback=settings.smart_allow_http_loopback,
        session_seconds=settings.smart_session_seconds,
        timeout=settings.fhir_timeout_seconds,
        discovery_cache_seconds=settings.smart_discovery_cache_seconds,
        client_keys=settings.smart_client_keys,
    )


def _cds_hooks_config(settings: Settings, backend: GovernedBackend) -> cds_hooks.CdsHooksConfig:
    return cds_hooks.CdsHooksConfig(
        backend=backend,
        authenticator=None if settings.auth_disabled else _authenticator(settings, backend),
        public_base_url=settings.base_url,
        reader_settings=ReaderSettings(
            timeout=settings.fhir_timeout_seconds,
            budget=settings.prefetch_budget_seconds,
            max_pages=settings.prefetch_max_pages,
        ),
        require_https_fhir=settings.require_https_fhir,
    )


def _authenticator(settings: Settings, backend: GovernedBackend) -> ClientAuthenticator:
    return ClientAuthenticator(
        clients={client.iss: client for client in settings.trusted_clients},
        key_sets=KeySetCache(
            timeout=settings.fhir_timeout_seconds,
            cache_seconds=settings.jwks_cache_seconds,
            refresh_min_interval=settings.jwks_refresh_min_interval_seconds,
        ),
        leeway=settings.jwt_leeway_seconds,
        max_lifetime=settings.jwt_max_lifetime_seconds,
    )
