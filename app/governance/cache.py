"""Governance reads cached in each worker process, invalidated from every other within a bound.

Each hook call needs its model's status and the rules its clinician recently overrode for the
patient. Both change seldom, yet a pause or an override must reach every worker process within a
second. One cache holds them; a watcher thread per process tells it that something changed:

- once per interval it reads the newest ids of the two tables the reads come from
  (``model_change``, ``card_decision``, both append-only): a new row is itself the signal, however
  it was written. SQLite has nothing faster between processes;
- on PostgreSQL it also ``LISTEN``s, on a connection of its own (which the ids are read on), and
  the writer ``NOTIFY``s in the transaction of the change (``signal_change``): every worker hears
  of it at commit, not at its next read, and never of a change rolled back.

A change bumps an epoch: at once in the writer's own process (``signal_change``), in every other
when its watcher sees the change. A cached value serves only the epoch it was read in. Each read
of the ids vouches that nothing before it was missed; values are served only while the watcher
vouched within two intervals. Otherwise (the listener's connection lost, the database down, the
thread starved) every read goes to the database until the watcher has caught up, so a stale value
is never served for longer than that bound.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterator
from contextlib import ExitStack, closing, contextmanager
from typing import TypeVar, cast

from sqlalchemy import Connection, Engine, func, select

from app.audit.tables import CardDecision
from app.governance.lifecycle import ModelChange

CHANNEL = "countersign_governance"
LISTENER_NAME = "countersign-governance-listener"  # in pg_stat_activity, with the worker's pid
MAX_ENTRIES = 10_000
NEWEST_IDS = select(
    select(func.max(ModelChange.id)).scalar_subquery(),
    select(func.max(CardDecision.id)).scalar_subquery(),
)
MISSING = object()
T = TypeVar("T")
log = logging.getLogger(__name__)


class _OwnChanges:
    """Changes made in this process: its own cache need not wait for the watcher to hear of them."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.count += 1


OWN_CHANGES = _OwnChanges()


def signal_change(connection: Connection) -> None:
    """On the transaction of a status change or an override: this process's caches drop what they
    hold at once, every other process's when it commits."""
    OWN_CHANGES.add()
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"NOTIFY {CHANNEL}")


class Watcher:
    """A thread that counts the changes it sees (the epoch) and vouches, once per interval, that
    it has missed none. Started at first use, so only processes that serve run one."""

    def __init__(self, engine: Engine, interval: float) -> None:
        self.engine = engine
        self.interval = interval
        self._epoch = 0
        self._vouched_at = -math.inf
        self._newest: tuple = ()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def epoch(self) -> int | None:
        """The changes seen so far; None when one may have gone unseen for longer than the bound."""
        if self._thread is None:
            self._start()
        if time.monotonic() - self._vouched_at > 2 * self.interval:
            return None
        return self._epoch + OWN_CHANGES.count

    def stop(self) -> None:
        self._stop.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="governance-watcher", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        failed_at = -math.inf
        while not self._stop.is_set():
            try:
                self._watch()
            except Exception as error:
                if self._stop.is_set():
                    return
                if self._vouched_at >= failed_at:  # once per outage, not at every retry
                    log.warning(
                        "governance cache watcher lost; reading through", extra={"reason": repr(error)}
                    )
                failed_at = time.monotonic()
            self._changed()
            self._stop.wait(self.interval)

    def _watch(self) -> None:
        """Bump the epoch when watching (re)starts and at each change; vouch once per interval."""
        raise NotImplementedError

    def _changed(self) -> None:
        self._epoch += 1  # only the watcher's thread writes it

    def _vouch(self) -> None:
        self._vouched_at = time.monotonic()

    def _check(self, newest: tuple) -> None:
        """The newest ids just read: a change if they moved; either way, nothing was missed."""
        if newest != self._newest:
            self._newest = newest
            self._changed()
        self._vouch()


class NewestIdPoll(Watcher):
    """SQLite: the newest model change and decision ids, read every interval."""

    def _watch(self) -> None:
        while not self._stop.is_set():
            with self.engine.connect() as connection:
                self._check(tuple(connection.execute(NEWEST_IDS).one()))
            self._stop.wait(self.interval)


class NotificationListener(Watcher):
    """PostgreSQL: ``LISTEN`` on a connection outside the pool, kept for the process's life; the
    newest ids are read on it too, once per interval."""

    def _watch(self) -> None:
        dialect = self.engine.dialect
        arguments, options = dialect.create_connect_args(self.engine.url)
        options["application_name"] = listener_name()
        newest_ids = str(NEWEST_IDS.compile(dialect=dialect))
        with closing(dialect.connect(*arguments, **options)) as connection:
            connection.autocommit = True  # notifications arrive only outside a transaction
            connection.execute(f"LISTEN {CHANNEL}")
            self._changed()
            self._vouch()
            while not self._stop.is_set():
                for _ in connection.notifies(timeout=self.interval):
                    self._changed()
                # Also a ping (a silently lost connection would look like quiet) and a net for a
                # change written without its NOTIFY (by hand, in SQL).
                self._check(tuple(connection.execute(newest_ids).fetchone()))


class GovernanceCache:
    """Values read from the database, each served only in the epoch it was read in."""

    def __init__(self, engine: Engine, watcher: Watcher) -> None:
        self.engine = engine
        self.watcher = watcher
        self._epoch = -1
        self._entries: dict[Hashable, object] = {}
        self._lock = threading.Lock()
        weakref.finalize(self, watcher.stop)  # the watcher's thread ends with the app that owns it

    @contextmanager
    def reading(self) -> Iterator[Reader]:
        """A miss reads in a transaction that ends in COMMIT, not the ROLLBACK of a plain connect():
        psycopg drops every statement prepared on a connection at each ROLLBACK."""
        with ExitStack() as stack:
            yield Reader(self, self.watcher.epoch(), lambda: stack.enter_context(self.engine.begin()))

    def lookup(self, key: Hashable, epoch: int | None) -> object:
        if epoch is None or epoch != self._epoch:
            return MISSING
        return self._entries.get(key, MISSING)

    def store(self, key: Hashable, epoch: int | None, value: object) -> None:
        """A value read in an older epoch than the newest stored is dropped: it may predate a change."""
        with self._lock:
            if epoch is None or epoch < self._epoch:
                return
            if epoch > self._epoch:
                self._entries.clear()
                self._epoch = epoch
            elif len(self._entries) >= MAX_ENTRIES:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = value


class Reader:
    """One call's reads: all in the same epoch, on at most one connection, opened at the first miss."""

    def __init__(self, cache: GovernanceCache, epoch: int | None, connect: Callable[[], Connection]) -> None:
        self._cache = cache
        self._epoch = epoch
        self._connect = connect
        self._connection: Connection | None = None

    def __call__(self, key: Hashable, load: Callable[[Connection], T]) -> T:
        cached = self._cache.lookup(key, self._epoch)
        if cached is not MISSING:
            return cast(T, cached)
        if self._connection is None:
            self._connection = self._connect()
        value = load(self._connection)
        self._cache.store(key, self._epoch, value)
        return value


def listener_name() -> str:
    return f"{LISTENER_NAME}-{os.getpid()}"


def governance_cache(engine: Engine, interval: float) -> GovernanceCache:
    watcher = NotificationListener if engine.dialect.name == "postgresql" else NewestIdPoll
    return GovernanceCache(engine, watcher(engine, interval))
