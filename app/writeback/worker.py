"""Drains the outbox: in a thread of the web process by default, or as ``countersign worker``.

Each round first sends the probes that are due to targets whose circuit breaker is open, then
claims a batch from the other targets and writes each target's share as one transaction (two
when it holds Provenances, which ``sender`` signs between them). A server fault (no answer, 5xx,
408, 429) is retried within the retry window and counted by the target's breaker; once the server
did not take a request at all, the rest of that round's messages for it are handed back untried.
Anything the server refuses (another 4xx) is isolated and dead-lettered at once.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import Engine

from app.audit import outbox, target_breaker
from app.audit.target_breaker import BreakerPolicy, TargetState
from app.db import utcnow
from app.governance.model_card import ModelRegistry
from app.observability.metrics import OUTBOX_SETTLED
from app.security.signing_key import signing_key
from app.settings import Settings, WriteBackServer
from app.writeback.delivery import Deliverer
from app.writeback.fhir_writer import DeliveryError, FhirWriter
from app.writeback.retry_policy import RetryPolicy
from app.writeback.sender import Sender
from app.writeback.transaction_bundle import TransactionBundle

log = logging.getLogger(__name__)
REMOVED_SETTINGS = ("COUNTERSIGN_OUTBOX_MAX_ATTEMPTS",)
DEFAULT_RETRY, DEFAULT_BREAKER = RetryPolicy(), BreakerPolicy()

Built = tuple[outbox.Claimed, TransactionBundle]


@dataclass
class Attempt:
    """What one round learnt about a target, the last word winning: it answered, or it faulted."""

    answered: bool = False
    fault: DeliveryError | None = None

    def learn(self, error: DeliveryError) -> None:
        if error.server_fault:
            self.answered, self.fault = False, error
        elif error.status is not None:
            self.answered, self.fault = True, None

    def delivered(self) -> None:
        self.answered, self.fault = True, None


class OutboxWorker:
    def __init__(
        self,
        engine: Engine,
        deliverer: Deliverer,
        sender: Sender,
        servers: dict[str, WriteBackServer],
        *,
        batch_size: int = 20,
        lease: timedelta = timedelta(seconds=60),
        policy: RetryPolicy = DEFAULT_RETRY,
        breaker: BreakerPolicy = DEFAULT_BREAKER,
    ) -> None:
        self.engine = engine
        self.deliverer = deliverer
        self.sender = sender
        self.writers = {key: FhirWriter(server) for key, server in servers.items()}
        self.batch_size = batch_size
        self.lease = lease
        self.policy = policy
        self.breaker = breaker
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def run_once(self) -> int:
        """Send the probes that are due, then deliver one batch; returns how many messages it tried."""
        with self.engine.connect() as connection:
            failing = target_breaker.states(connection)
        now = utcnow()
        probed = sum(self._probe(state) for state in failing.values() if state.state(now) == "half-open")
        messages = outbox.claim(self.engine, self.owner, self.batch_size, self.lease)
        by_target: dict[str, list[outbox.Claimed]] = {}
        for message in messages:
            by_target.setdefault(message.target, []).append(message)
        for target, group in by_target.items():
            self._settle_breaker(target, self._deliver_group(target, group), failing.get(target))
        return probed + len(messages)

    def _probe(self, state: TargetState) -> int:
        """One message alone to a target that was down, if no other worker took this interval's probe."""
        opened_at = target_breaker.take_probe(self.engine, state.target, self.breaker.probe_interval)
        if opened_at is None:
            return 0
        message = outbox.claim_probe(self.engine, self.owner, state.target, self.lease)
        if message is None:
            target_breaker.record_answer(self.engine, state.target)  # nothing owed, nothing to guard
            return 0
        held_since = message.failing_since or max(message.created_at, opened_at)
        attempt = self._deliver_group(state.target, [replace(message, failing_since=held_since)])
        self._settle_breaker(state.target, attempt, state)
        if attempt.fault is not None:
            self._expire_held(state.target, opened_at, attempt.fault)
        return 1

    def _deliver_group(self, target: str, messages: list[outbox.Claimed]) -> Attempt:
        """One transaction for the whole group; if the server refuses it, each message alone."""
        attempt = Attempt()
        writer = self.writers.get(target)
        if writer is None:
            error = DeliveryError("no write-back credentials for this server", permanent=True)
            for message in messages:
                self._failed(message, error)
            return attempt
        built = self._build(writer, messages, attempt)
        if not self._resolve_references(writer, built, attempt):
            return attempt
        if len(built) > 1 and self._send_batch(writer, built, attempt):
            return attempt
        self._send_each(writer, built, attempt)
        return attempt

    def _build(self, writer: FhirWriter, messages: list[outbox.Claimed], attempt: Attempt) -> list[Built]:
        built: list[Built] = []
        for index, message in enumerate(messages):
            try:
                built.append((message, self.deliverer.build(message.kind, message.record_id, writer)))
            except DeliveryError as error:
                self._failed(message, error)
                attempt.learn(error)
                if error.unanswered:
                    outbox.release(self.engine, [m for m, _ in built] + messages[index + 1 :], self.owner)
                    return []
        return built

    def _resolve_references(self, writer: FhirWriter, built: list[Built], attempt: Attempt) -> bool:
        """False when the server could not be asked which references it holds (the batch waits)."""
        try:
            self.deliverer.resolve_references(writer, [bundle for _, bundle in built])
        except DeliveryError as error:
            attempt.learn(error)
            for message, _ in built:
                self._failed(message, error)
            return False
        return True

    def _send_batch(self, writer: FhirWriter, built: list[Built], attempt: Attempt) -> bool:
        """False when the batch must be split to find the message the server refused."""
        try:
            self.sender.send(writer, TransactionBundle.combine([bundle for _, bundle in built]))
        except DeliveryError as error:
            attempt.learn(error)
            if not error.unanswered:
                log.info("batched write-back failed; delivering its messages one by one")
                return False
            for message, _ in built:
                self._failed(message, error)
            return True
        self._delivered([message for message, _ in built], attempt)
        return True

    def _send_each(self, writer: FhirWriter, built: list[Built], attempt: Attempt) -> None:
        for index, (message, bundle) in enumerate(built):
            try:
                self.sender.send(writer, bundle)
            except DeliveryError as error:
                attempt.learn(error)
                if error.permanent and len(bundle.entries) > 1:
                    error = self._send_parts(writer, bundle, error)
                self._failed(message, error)
                if error.unanswered:
                    outbox.release(self.engine, [m for m, _ in built[index + 1 :]], self.owner)
                    return
            else:
                self._delivered([message], attempt)

    def _send_parts(
        self, writer: FhirWriter, bundle: TransactionBundle, refusal: DeliveryError
    ) -> DeliveryError:
        """The server refused the record: send each resource alone so that the rest of it lands.

        The message is still dead-lettered, with the refused parts' reasons: a retry after the fix
        sends the whole record again, and the conditional creates keep what landed from doubling.
        """
        issues: list[dict] = []
        for part in bundle.parts():
            try:
                self.sender.send(writer, part)
            except DeliveryError as error:
                if not error.permanent:
                    return error
                issues += error.outcome.get("issue", [])
        if not issues:
            return refusal  # every part alone was accepted: the refusal was of their combination
        outcome = {"resourceType": "OperationOutcome", "issue": issues}
        return DeliveryError(str(refusal), permanent=True, outcome=outcome, status=refusal.status)

    def _delivered(self, messages: list[outbox.Claimed], attempt: Attempt) -> None:
        outbox.mark_delivered(self.engine, messages, self.owner)
        OUTBOX_SETTLED.labels("delivered").inc(len(messages))
        attempt.delivered()

    def _failed(self, message: outbox.Claimed, error: DeliveryError) -> None:
        """Dead-letter a refusal or a message whose window has ended; otherwise back off."""
        now = utcnow()
        since = message.failing_since or now
        failure = outbox.Failure(error.outcome, error.status)
        if error.permanent or self.policy.expired(since, now):
            outbox.mark_dead(self.engine, message, self.owner, failure, since)
            OUTBOX_SETTLED.labels("dead").inc()
            cause = "refused" if error.permanent else "retry-window-ended"
            log.error(
                "outbox message dead-lettered",
                extra={"message_id": message.id, "kind": message.kind, "cause": cause, "reason": str(error)},
            )
            return
        delay = self.policy.delay(message.attempts, error.retry_after)
        outbox.retry_later(self.engine, message, self.owner, failure, since, delay)
        OUTBOX_SETTLED.labels("retry").inc()
        log.warning("outbox delivery will be retried", extra={"message_id": message.id, "reason": str(error)})

    def _settle_breaker(self, target: str, attempt: Attempt, before: TargetState | None) -> None:
        """Count a fault (the breaker opens at the threshold, or at once on ``Retry-After``), or
        reset the count when a target that had faulted answered."""
        if attempt.fault is not None:
            retry_after = attempt.fault.retry_after
            honoured = None if retry_after is None else self.policy.honoured(retry_after)
            is_open = target_breaker.record_fault(self.engine, target, self.breaker, honoured)
            if is_open and (before is None or before.opened_at is None):
                log.warning("write-back target is down; delivery paused, probing it")
        elif attempt.answered and before is not None:
            target_breaker.record_answer(self.engine, target)
            if before.opened_at is not None:
                log.warning("write-back target answers again; delivery resumed")

    def _expire_held(self, target: str, opened_at: datetime, fault: DeliveryError) -> None:
        failure = outbox.Failure(fault.outcome, fault.status)
        expired = outbox.expire_held(self.engine, target, opened_at, failure, self.policy.window)
        if expired:
            OUTBOX_SETTLED.labels("dead").inc(expired)
            log.error(
                "outbox messages dead-lettered: their target was down for their whole retry window",
                extra={"count": expired, "cause": "retry-window-ended"},
            )

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


def outbox_worker(settings: Settings, engine: Engine, models: ModelRegistry) -> OutboxWorker:
    for name in REMOVED_SETTINGS:
        if name in os.environ:
            log.warning(
                "a removed outbox setting is set and ignored: transient failures are retried for "
                "COUNTERSIGN_OUTBOX_RETRY_WINDOW_HOURS",
                extra={"kind": name},
            )
    return OutboxWorker(
        engine,
        Deliverer(engine, models, settings.base_url),
        Sender(signing_key(settings)),
        {server.key: server for server in settings.writeback_servers},
        batch_size=settings.outbox_batch_size,
        lease=timedelta(seconds=settings.outbox_lease_seconds),
        policy=RetryPolicy(
            base_delay=settings.outbox_base_delay_seconds,
            window=timedelta(hours=settings.outbox_retry_window_hours),
        ),
        breaker=BreakerPolicy(settings.outbox_breaker_failures, settings.outbox_probe_seconds),
    )
