"""Gunicorn, embedded: ``countersign serve`` and the demo run the app with the same settings."""

from __future__ import annotations

import gc
import os
from collections.abc import Callable

from flask import Flask
from gunicorn.app.base import BaseApplication

from app.observability.exposition import prepare_multiprocess, worker_exited

DEFAULT_THREADS = 4


def default_workers() -> int:
    """Gunicorn's 2 x cores + 1: hook calls are CPU-bound Python, so processes carry the load;
    a few threads each cover waits on FHIR reads without one keep-alive client pinning a process."""
    return 2 * (os.cpu_count() or 1) + 1


class EmbeddedGunicorn(BaseApplication):
    """Serves an application factory; each worker builds its own app (and database pool)."""

    def __init__(self, factory: Callable[[], Flask], options: dict) -> None:
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Flask:
        """The app, with everything built so far moved out of the collector's sight (``gc.freeze``):
        modules, FHIR models and the registry live as long as the worker, and a full collection
        that re-walks them on every large request costs tens of milliseconds."""
        app = self.factory()
        gc.collect()
        gc.freeze()
        return app


def serve(
    factory: Callable[[], Flask], bind: str, workers: int, threads: int, extra: dict | None = None
) -> None:
    """``extra``: further gunicorn settings (the demo quiets the log to keep its own output readable)."""
    prepare_multiprocess()
    EmbeddedGunicorn(
        factory,
        {
            "bind": bind,
            "workers": workers,
            "threads": threads,
            "worker_class": "gthread",
            "timeout": 30,
            "graceful_timeout": 10,
            "keepalive": 5,
            "accesslog": None,
            "child_exit": lambda _server, worker: worker_exited(worker.pid),
        }
        | (extra or {}),
    ).run()
