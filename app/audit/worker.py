"""Drains the outbox: in a thread of the web process by default, or as ``countersign worker``."""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import Engine

from app.audit import outbox
from app.audit.delivery import Deliverer, TransactionBundle
from app.audit.fhir_writer import DeliveryError, FhirWriter, WriteBackServer
from app.observability.metrics import OUTBOX_SETTLED
from app.registry import ModelCard
from app.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    base_delay: float = 1.0
    max_delay: float = 300.0

    def delay(self, attempts: int) -> timedelta:
        """Exponential backoff: 1 s, 2 s, 4 s, ... capped."""
        return timedelta(seconds=min(self.base_delay * 2**attempts, self.max_delay))


class OutboxWorker:
    def __init__(
        self,
        engine: Engine,
        deliverer: Deliverer,
        servers: dict[str, WriteBackServer],
        *,
        batch_size: int = 20,
        lease: timedelta = timedelta(seconds=60),
        policy: RetryPolicy = RetryPolicy(),
    ) -> None:
        self.engine = engine
        self.deliverer = deliverer
        self.writers = {key: FhirWriter(server) for key, server in servers.items()}
        self.batch_size = batch_size
        self.lease = lease
        self.policy = policy
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def run_once(self) -> int:
        """Deliver one batch; returns how many messages it settled."""
        messages = outbox.claim(self.engine, self.owner, self.batch_size, self.lease)
        by_target: dict[str, list[outbox.Claimed]] = {}
        for message in messages:
            by_target.setdefault(message.target, []).append(message)
        for target, group in by_target.items():
            self._deliver_group(target, group)
        return len(messages)

    def _deliver_group(self, target: str, messages: list[outbox.Claimed]) -> None:
        """One transaction for the whole group; if it fails, each message alone, to isolate it."""
        writer = self.writers.get(target)
        if writer is None:
            error = DeliveryError("no write-back credentials for this server", permanent=True)
            for message in messages:
                self._failed(message, error)
            return
        built = []
        for message in messages:
            try:
                built.append((message, self.deliverer.build(message.kind, message.record_id, writer)))
            except DeliveryError as error:
                self._failed(message, error)
        if len(built) > 1:
            try:
                writer.transaction(TransactionBundle.combine([bundle for _, bundle in built]).as_fhir())
            except DeliveryError:
                log.info("batched write-back failed; delivering its messages one by one")
            else:
                outbox.mark_delivered(self.engine, [message for message, _ in built], self.owner)
                OUTBOX_SETTLED.labels("delivered").inc(len(built))
                return
        for message, bundle in built:
            self._deliver_one(writer, message, bundle)

    def _deliver_one(self, writer: FhirWriter, message: outbox.Claimed, bundle: TransactionBundle) -> None:
        try:
            writer.transaction(bundle.as_fhir())
        except DeliveryError as error:
            self._failed(message, error)
        else:
            outbox.mark_delivered(self.engine, [message], self.owner)
            OUTBOX_SETTLED.labels("delivered").inc()

    def _failed(self, message: outbox.Claimed, error: DeliveryError) -> None:
        if error.permanent or message.attempts + 1 >= self.policy.max_attempts:
            outbox.mark_dead(self.engine, message, self.owner, error.outcome)
            OUTBOX_SETTLED.labels("dead").inc()
            log.error(
                "outbox message dead-lettered",
                extra={"message_id": message.id, "kind": message.kind, "reason": str(error)},
            )
            return
        outbox.retry_later(
            self.engine, message, self.owner, error.outcome, self.policy.delay(message.attempts)
        )
        OUTBOX_SETTLED.labels("retry").inc()
        log.warning("outbox delivery will be retried", extra={"message_id": message.id, "reason": str(error)})

    def run_forever(self, stop: threading.Event, idle_seconds: float = 1.0) -> None:
        while not stop.is_set():
            try:
                settled = self.run_once()
            except Exception:
                log.exception("outbox worker iteration failed")
                settled = 0
            if not settled:
                stop.wait(idle_seconds)

    def start_in_background(self) -> threading.Event:
        """The embedded default: a daemon thread in each web process; leases keep them apart."""
        stop = threading.Event()
        threading.Thread(target=self.run_forever, args=(stop,), name="outbox-worker", daemon=True).start()
        return stop


def outbox_worker(settings: Settings, engine: Engine, models: dict[str, ModelCard]) -> OutboxWorker:
    return OutboxWorker(
        engine,
        Deliverer(engine, models, settings.base_url),
        {server.key: server for server in settings.writeback_servers},
        batch_size=settings.outbox_batch_size,
        lease=timedelta(seconds=settings.outbox_lease_seconds),
        policy=RetryPolicy(settings.outbox_max_attempts, settings.outbox_base_delay_seconds),
    )
