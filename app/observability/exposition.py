"""``/metrics``: this process's (or every gunicorn worker's) metrics plus outbox and ledger state
from the database.

Under gunicorn each worker is its own process, so counters are kept in files under
``PROMETHEUS_MULTIPROC_DIR`` and summed at scrape time (prometheus-client's multiprocess mode);
``countersign serve`` sets that up. Outbox depth, delivery lag, dead letters, the write-back
targets' circuit breakers and the ledger entries waiting for their seal are read from the
database on each scrape, so they are true for every web process and separate ``countersign worker``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
    values,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine

from app.audit import outbox_report
from app.audit.ledger import unsealed_backlog
from app.audit.outbox import DEAD, PENDING
from app.db import utcnow
from app.observability.metrics import CIRCUIT_STATES

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST


class OutboxCollector(Collector):
    """Depth by status; per target, dead letters, the age of the oldest pending message (delivery
    lag) and the state of the target's circuit breaker."""

    def __init__(self, engine: Engine, configured_targets: Iterable[str] = ()) -> None:
        self.engine = engine
        self.configured_targets = tuple(configured_targets)

    def collect(self) -> Iterator[Metric]:
        now = utcnow()
        with self.engine.connect() as connection:
            reports = outbox_report.targets(connection, self.configured_targets, now, (PENDING, DEAD))
        depth = GaugeMetricFamily(
            "countersign_outbox_messages", "Outbox messages by status (pending, dead).", labels=["status"]
        )
        for status in (PENDING, DEAD):
            depth.add_metric([status], sum(report.counts[status] for report in reports))
        yield depth
        dead = GaugeMetricFamily(
            "countersign_outbox_dead_letters",
            "Write-backs given up on, per target: they need an operator (countersign outbox list --dead).",
            labels=["target"],
        )
        lag = GaugeMetricFamily(
            "countersign_outbox_oldest_pending_seconds",
            "Delivery lag per target: age of the oldest message still waiting to be written (0 when none).",
            labels=["target"],
        )
        breaker = GaugeMetricFamily(
            "countersign_outbox_breaker_state",
            "Circuit breaker of each write-back target: 0 closed, 1 half-open (probe due), 2 open (paused).",
            labels=["target"],
        )
        for report in reports:
            dead.add_metric([report.target], report.counts[DEAD])
            lag.add_metric([report.target], report.oldest_pending_seconds(now))
            breaker.add_metric([report.target], CIRCUIT_STATES[report.breaker])
        yield from (dead, lag, breaker)


class LedgerCollector(Collector):
    """The unsealed window: entries not yet chained, and how long the oldest has waited."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        with self.engine.connect() as connection:
            backlog = unsealed_backlog(connection)
        yield GaugeMetricFamily(
            "countersign_ledger_unsealed_entries",
            "Ledger entries committed but not yet chained and sealed.",
            value=backlog.entries,
        )
        yield GaugeMetricFamily(
            "countersign_ledger_oldest_unsealed_seconds",
            "Age of the oldest ledger entry still waiting for its seal (0 when none): the window in "
            "which only its MAC and its record vouch for it.",
            value=backlog.age(utcnow()),
        )


class _ProcessCollector(Collector):
    """This process's own registry, when there are no worker processes to sum."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def render(engine: Engine, targets: Iterable[str] = ()) -> bytes:
    """The exposition text for one scrape; ``targets`` are the configured write-back servers."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ProcessCollector())
    registry.register(OutboxCollector(engine, targets))
    registry.register(LedgerCollector(engine))
    return generate_latest(registry)


def prepare_multiprocess() -> Path:
    """Before gunicorn forks: a clean metrics directory shared by the workers, and file-backed values.

    Uses ``PROMETHEUS_MULTIPROC_DIR`` when set (emptied: stale files would add a previous run's
    counts), else a fresh temporary directory. prometheus-client picks its value class on import,
    which the master has already done, so it is switched here, before any worker exists.
    """
    configured = os.environ.get(MULTIPROC_ENV)
    directory = Path(configured) if configured else Path(tempfile.mkdtemp(prefix="countersign-metrics-"))
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(directory)
    values.ValueClass = values.get_value_class()
    return directory


def worker_exited(pid: int) -> None:
    """Gunicorn ``child_exit``: drop a dead worker's live gauges."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(pid)
