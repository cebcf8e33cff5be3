"""Shadow versions run after the response, off the request path, and are recorded, never shown.

Each worker process has one background thread and a bounded queue. A hook call hands over its
shadow versions once its own record has committed, so a shadow never adds latency to the answer a
clinician waits for. When the queue is full (shadows slower than the traffic) the run is dropped
and counted (``countersign_shadow_runs_total{outcome="dropped"}``): a shadow is evidence for a
promotion, not a record the EHR relies on. Runs still queued when a process stops are lost.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from sqlalchemy import Engine

from app.audit import ledger, outbox
from app.audit.outbox import SHADOW_CARD_SET
from app.audit.tables import CardSet
from app.observability import metrics
from app.serving.card_records import CardSetRecord, card_set_entry
from app.serving.catalogue import GovernedService
from app.serving.runs import patient_data, run_version
from cds_hooks.backend import HookCall
from cds_hooks.cards import render_card

MAX_PENDING = 256
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowJob:
    """The shadow versions to run on one call, with what the active version's run already read."""

    call: HookCall
    service: GovernedService
    versions: tuple[str, ...]
    overridden: frozenset[str]
    writeback_target: str | None


class ShadowRunner:
    def __init__(self, engine: Engine, launch_url: Callable[[], str], max_pending: int = MAX_PENDING) -> None:
        self.engine = engine
        self.launch_url = launch_url
        self._jobs: queue.Queue[ShadowJob] = queue.Queue(max_pending)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, job: ShadowJob) -> None:
        """Never blocks the caller: a full queue drops the job and counts it."""
        self._start()
        try:
            self._jobs.put_nowait(job)
        except queue.Full:
            for version in job.versions:
                metrics.SHADOW_RUNS.labels(job.service.id, version, "dropped").inc()
            log.warning("shadow run dropped: queue full", extra={"service": job.service.id})

    def drain(self, timeout: float = 30.0) -> None:
        """Wait until every submitted job has run (tests, and a clean shutdown)."""
        done = threading.Event()
        threading.Thread(target=lambda: (self._jobs.join(), done.set()), daemon=True).start()
        if not done.wait(timeout):
            raise TimeoutError(f"shadow runs still pending after {timeout} s")

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run_forever, name="shadow-runner", daemon=True)
                self._thread.start()

    def _run_forever(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                for version in job.versions:
                    self._run(job, version)
            finally:
                self._jobs.task_done()

    def _run(self, job: ShadowJob, version: str) -> None:
        """One version on one call: its advice under its own policy, recorded as shadow."""
        service, call = job.service, job.call
        try:
            served = service.versions[version]
            advice = run_version(served, service.id, patient_data(call), set(job.overridden))
            advice = replace(advice, disposition="shadow")
            cards = [render_card(item, self.launch_url()) for item in advice.advice]
            record = CardSetRecord.of(call, served.model, advice, cards)
            entry = card_set_entry(call, served.model, advice, cards)
            with self.engine.begin() as connection:
                card_set_id = record.insert(connection)
                ledger.append(connection, "card-set-shadow", entry, about=(CardSet, card_set_id))
                if job.writeback_target is not None:
                    outbox.enqueue(connection, SHADOW_CARD_SET, card_set_id, job.writeback_target)
        except Exception as error:  # a shadow's failure must never reach the clinician's path
            metrics.SHADOW_RUNS.labels(service.id, version, "failed").inc()
            log.warning(
                "shadow run failed",
                extra={"service": service.id, "version": version, "reason": type(error).__name__},
            )
            return
        metrics.SHADOW_RUNS.labels(service.id, version, "recorded").inc()
        metrics.record_disposition(service.id, call.request.hook, advice, len(cards))
