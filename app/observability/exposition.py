"""``/metrics``: this process's (or every gunicorn worker's) metrics plus outbox state from the database.

Under gunicorn each worker is its own process, so counters are kept in files under
``PROMETHEUS_MULTIPROC_DIR`` and summed at scrape time (prometheus-client's multiprocess mode);
``countersign serve`` sets that up. Outbox depth, delivery lag and dead letters are read from the
database on each scrape, so they are true for every web process and separate ``countersign worker``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
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
from sqlalchemy import Engine, func, select

from app.audit.outbox import DEAD, PENDING, OutboxMessage
from app.db import utcnow

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = CONTENT_TYPE_LATEST


class OutboxCollector(Collector):
    """Depth by status, the age of the oldest pending message (delivery lag) and dead letters."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        with self.engine.connect() as connection:
            counts = dict(
                connection.execute(
                    select(OutboxMessage.status, func.count())
                    .where(OutboxMessage.status.in_([PENDING, DEAD]))
                    .group_by(OutboxMessage.status)
                ).all()
            )
            oldest = connection.execute(
                select(func.min(OutboxMessage.created_at)).where(OutboxMessage.status == PENDING)
            ).scalar()
        depth = GaugeMetricFamily(
            "countersign_outbox_messages", "Outbox messages by status (pending, dead).", labels=["status"]
        )
        for status in (PENDING, DEAD):
            depth.add_metric([status], counts.get(status, 0))
        yield depth
        yield GaugeMetricFamily(
            "countersign_outbox_dead_letters",
            "Write-backs given up on: they need an operator (see last_error on the message).",
            value=counts.get(DEAD, 0),
        )
        yield GaugeMetricFamily(
            "countersign_outbox_oldest_pending_seconds",
            "Delivery lag: age of the oldest message still waiting to be written back (0 when none).",
            value=_age_seconds(oldest),
        )


class _ProcessCollector(Collector):
    """This process's own registry, when there are no worker processes to sum."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


def _age_seconds(created_at: object) -> float:
    if created_at is None:
        return 0.0
    aware = created_at if created_at.tzinfo else created_at.replace(tzinfo=utcnow().tzinfo)
    return max((utcnow() - aware).total_seconds(), 0.0)


def render(engine: Engine) -> bytes:
    """The exposition text for one scrape."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ProcessCollector())
    registry.register(OutboxCollector(engine))
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
