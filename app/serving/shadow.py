"""Shadow versions run after the response, in a process of their own, and are recorded, never shown.

A hook call hands its shadow versions over once its own record has committed: the request path only
puts the call on a bounded queue. Each serving process starts one shadow process at its first job
(spawned, with its own engines and database connections, ``nice`` 10): on a machine with a spare
core the clinician's answer never waits for a shadow, and when every core is busy the operating
system serves requests first. A full queue (shadows slower than the traffic) drops the job and
counts it (``countersign_shadow_runs_total{outcome="dropped"}``): a shadow is evidence for a
promotion, not a record the EHR relies on. Jobs still queued when a process stops are lost; a
shadow process that died is replaced at the next job.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import os
import queue
import threading
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from multiprocessing.queues import JoinableQueue

from sqlalchemy import Engine

from app.audit import ledger, outbox
from app.audit.outbox import SHADOW_CARD_SET
from app.audit.tables import CardSet
from app.db import create_db_engine, default_database_url
from app.observability import metrics
from app.observability.logging import configure as configure_logging
from app.serving.card_records import CardSetRecord, card_set_entry
from app.serving.catalogue import GovernedService, launch_url, load_catalogue
from app.serving.runs import patient_data, run_version
from app.settings import Settings
from cds_hooks.backend import HookCall
from cds_hooks.cards import render_card

MAX_PENDING = 256
NICENESS = 10
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShadowJob:
    """The shadow versions to run on one call, with what the active version's run already read.
    Plain data: it crosses to the shadow process."""

    call: HookCall
    versions: tuple[str, ...]
    overridden: frozenset[str]
    writeback_target: str | None

    @classmethod
    def of(cls, call: HookCall, versions: tuple[str, ...], overridden: frozenset[str], target: str | None):
        """Without the caller's verified token: the shadow process needs none of it."""
        return cls(dataclasses.replace(call, client=None), versions, overridden, target)


class ShadowRunner:
    """The serving process's side: the queue to its shadow process, started at the first job."""

    def __init__(self, settings: Settings, max_pending: int = MAX_PENDING) -> None:
        self.settings = settings
        self.max_pending = max_pending
        self._context = multiprocessing.get_context("spawn")
        self._jobs: JoinableQueue | None = None
        self._process: BaseProcess | None = None
        self._lock = threading.Lock()

    def submit(self, job: ShadowJob) -> None:
        """Never blocks the caller: a full queue drops the job and counts it."""
        try:
            self._started().put(job, block=False)
        except queue.Full:
            for version in job.versions:
                metrics.SHADOW_RUNS.labels(job.call.service_id, version, "dropped").inc()
            log.warning("shadow run dropped: queue full", extra={"service": job.call.service_id})

    def drain(self, timeout: float = 60.0) -> None:
        """Wait until every submitted job has run (tests, benchmarks)."""
        jobs = self._jobs
        if jobs is None:
            return
        done = threading.Event()
        threading.Thread(target=lambda: (jobs.join(), done.set()), daemon=True).start()
        if not done.wait(timeout):
            raise TimeoutError(f"shadow runs still pending after {timeout} s")

    def stop(self) -> None:
        """End the shadow process once it has run what it holds."""
        with self._lock:
            if self._process is not None and self._process.is_alive():
                self._jobs.put(None)
                self._process.join(10)
                if self._process.is_alive():
                    self._process.terminate()
            self._process = None

    def _started(self) -> JoinableQueue:
        with self._lock:
            if self._process is None or not self._process.is_alive():
                if self._process is not None:
                    log.warning(
                        "shadow process ended; starting another", extra={"code": self._process.exitcode}
                    )
                self._jobs = self._context.JoinableQueue(self.max_pending)
                self._process = self._context.Process(
                    target=serve_shadows,
                    args=(self.settings, self._jobs, os.getpid()),
                    name="countersign-shadow",
                    daemon=True,
                )
                self._process.start()
            return self._jobs


def serve_shadows(settings: Settings, jobs: JoinableQueue, parent: int) -> None:
    """The shadow process: run each job's versions until told to stop or its parent is gone."""
    os.nice(NICENESS)
    configure_logging(settings.log_level, settings.log_hash_key)
    recorder = ShadowRecorder(settings)
    while True:
        try:
            job = jobs.get(timeout=1)
        except queue.Empty:
            if os.getppid() != parent:
                return
            continue
        try:
            if job is None:
                return
            for version in job.versions:
                recorder.run(job, version)
        finally:
            jobs.task_done()


class ShadowRecorder:
    """Runs a version on a call under its own policy and records it as shadow, with the catalogue
    and database connections of the shadow process."""

    def __init__(self, settings: Settings) -> None:
        self.engine: Engine = create_db_engine(
            settings.database_url or default_database_url(), settings.database_pool
        )
        ledger.bind_keys(self.engine, ledger.ledger_keys(settings))
        self.catalogue: dict[str, GovernedService] = load_catalogue(settings)[1]
        self.launch_url = launch_url(settings.base_url)

    def run(self, job: ShadowJob, version: str) -> None:
        call = job.call
        try:
            served = self.catalogue[call.service_id].versions[version]
            advice = run_version(served, call.service_id, patient_data(call), job.overridden)
            advice = replace(advice, disposition="shadow")
            cards = [render_card(item, self.launch_url) for item in advice.advice]
            record = CardSetRecord.of(call, served.model, advice, cards)
            entry = card_set_entry(call, served.model, advice, cards)
            with self.engine.begin() as connection:
                card_set_id = record.insert(connection)
                ledger.append(connection, "card-set-shadow", entry, about=(CardSet, card_set_id))
                if job.writeback_target is not None:
                    outbox.enqueue(connection, SHADOW_CARD_SET, card_set_id, job.writeback_target)
        except Exception as error:  # one failed shadow must not stop the others
            metrics.SHADOW_RUNS.labels(call.service_id, version, "failed").inc()
            log.warning(
                "shadow run failed",
                extra={"service": call.service_id, "version": version, "reason": type(error).__name__},
            )
            return
        metrics.SHADOW_RUNS.labels(call.service_id, version, "recorded").inc()
        metrics.record_disposition(call.service_id, call.request.hook, advice, len(cards))
