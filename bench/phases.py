"""One hook call in-process, per store: its CPU, what it asks of the database, and where its time goes.

    python -m bench.phases [--calls 2000] [--database sqlite|postgresql|both] [--append FILE]

No gunicorn, no network and no load generator: the same order-sign call and settings as
``bench.hooks`` go straight through the WSGI application. Per store, after a warm-up:

- the database work of a warm call, counted with SQLAlchemy's events: statements, transactions
  and commits, pool checkouts, hence round trips on PostgreSQL;
- CPU per call, unwrapped: the web process's, and on PostgreSQL its server backend's (``/proc``);
- the ledger sealer's work per round and per entry, and the statements an idle worker sends;
- each phase, timed by wrapping the function that does it.

These are the per-call figures of the capacity model in ``docs/DEPLOYMENT.md``.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from flask import Flask
from joserfc.jwk import RSAKey
from sqlalchemy import Engine, func, select, text

import app.audit.ledger
import app.serving.backend
import app.serving.runs
import app.web.hardening
import cds_hooks.blueprint
from app import DATABASE_KEY, SEALER_KEY, create_app
from app.audit.ledger import LedgerSeal, seal_now
from app.migrate import upgrade
from bench.counting import DatabaseWork, database_work
from bench.hooks import SERVICE_PATH, Signer, countersign_environment
from bench.stores import LABELS, POSTGRES_URL, STORES, database
from bench.workload import order_sign

BASE_URL = "http://127.0.0.1:8080"
WARM_UP = 200
COUNTED = 200
IDLE_SECONDS = 2.0
TOP_LEVEL = "whole call (WSGI)"
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class StoreFigures:
    cpu_ms: float
    server_cpu_ms: float | None
    call: DatabaseWork
    sealing: DatabaseWork
    sealed_per_round: float
    sealing_cpu_us: float
    sealing_server_cpu_us: float | None
    idle: DatabaseWork
    phases: Counter[str]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000, help="calls per store, CPU and phases (2000)")
    parser.add_argument("--database", choices=[*STORES, "both"], default="both", help="store(s) to measure")
    parser.add_argument("--postgres-url", default=POSTGRES_URL, help="server and database to make schemas in")
    parser.add_argument("--append", type=Path, help="append the markdown tables to this file")
    args = parser.parse_args()
    stores = STORES if args.database == "both" else (args.database,)
    signer = Signer(RSAKey.generate_key(2048))
    figures = {}
    with tempfile.TemporaryDirectory() as scratch:
        for store in stores:
            with database(store, Path(scratch), "phases", args.postgres_url) as url:
                figures[store] = _measure(in_process_app(url, Path(scratch), signer), signer, args.calls)
    report = _report(figures, args.calls)
    print(report)
    if args.append:
        with args.append.open("a") as output:
            output.write("\n" + report)


def in_process_app(database_url: str, scratch: Path, signer: Signer) -> Flask:
    """Sealing is left to ``_sealing`` (no sealer thread), so that a call's counts are its own."""
    upgrade(database_url)
    metrics_dir = scratch / "metrics"
    metrics_dir.mkdir(exist_ok=True)
    os.environ.update(countersign_environment(database_url, BASE_URL, signer, metrics_dir))
    os.environ["COUNTERSIGN_LEDGER_SEAL_IN_PROCESS"] = "false"
    application = create_app()
    log_file = (scratch / "countersign.log").open("a")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(log_file)  # the JSON access log is written, as in production
    return application


def _measure(application: Flask, signer: Signer, calls: int) -> StoreFigures:
    engine = application.extensions[DATABASE_KEY]
    environs = [call_environ(signer) for _ in range(WARM_UP + COUNTED + calls)]
    for environ in environs[:WARM_UP]:
        send(application, environ)
    with database_work(engine) as work:
        for environ in environs[WARM_UP : WARM_UP + COUNTED]:
            send(application, environ)
    timed = environs[WARM_UP + COUNTED :]
    cpu_ms, server_cpu_ms = _cpu(engine, lambda: [send(application, e) for e in timed[: calls // 2]])
    entries, rounds, sealing_work, sealing_cpu = _sealing(engine)
    return StoreFigures(
        cpu_ms=cpu_ms / (calls // 2),
        server_cpu_ms=None if server_cpu_ms is None else server_cpu_ms / (calls // 2),
        call=work.per(COUNTED),
        sealing=sealing_work.per(rounds),
        sealed_per_round=entries / rounds,
        sealing_cpu_us=sealing_cpu[0] * 1000 / entries,
        sealing_server_cpu_us=None if sealing_cpu[1] is None else sealing_cpu[1] * 1000 / entries,
        idle=_idle_work(application),
        phases=_timed_phases(application, timed[calls // 2 :]),
    )


def _cpu(engine: Engine, run: Callable[[], object]) -> tuple[float, float | None]:
    """Milliseconds of CPU that ``run`` took here, and in the PostgreSQL backends serving this app."""
    backends = _backends(engine)
    server_before = _ticks(backends)
    started = time.process_time()
    run()
    cpu = (time.process_time() - started) * 1000
    if not backends:
        return cpu, None
    return cpu, (_ticks(backends) - server_before) * 1000 / TICKS


def _backends(engine: Engine) -> list[int]:
    """Process ids of the server backends of this app's pool (none on SQLite)."""
    if engine.dialect.name != "postgresql":
        return []
    name = engine.url.query["application_name"]
    query = text("SELECT pid FROM pg_stat_activity WHERE application_name = :name")
    with engine.connect() as connection:
        return list(connection.execute(query, {"name": name}).scalars())


def _ticks(pids: list[int]) -> int:
    """User and system CPU of these processes, in clock ticks (``/proc/<pid>/stat`` fields 14, 15)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def _sealing(engine: Engine) -> tuple[int, int, DatabaseWork, tuple[float, float | None]]:
    """Seal the calls' backlog as a sealer thread would: entries, rounds (seals written), the
    work sent (the last, empty round's check included) and the CPU it took."""
    seals_before, entries = _seals(engine), []
    with database_work(engine) as work:
        cpu = _cpu(engine, lambda: entries.append(seal_now(engine)))
    return entries[0], _seals(engine) - seals_before, work, cpu


def _seals(engine: Engine) -> int:
    with engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(LedgerSeal)).scalar_one()


def _idle_work(application: Flask) -> DatabaseWork:
    """Per second, what a worker with no calls sends: its sealer's polls, its governance watcher's
    reads (on SQLite; on PostgreSQL the watcher listens on a connection outside the pool, one query
    per interval, not counted here), its WAL checkpointer."""
    engine = application.extensions[DATABASE_KEY]
    stop = application.extensions[SEALER_KEY].start_in_background()
    try:
        with database_work(engine, this_thread_only=False) as work:
            time.sleep(IDLE_SECONDS)
    finally:
        stop.set()
    return work.per(IDLE_SECONDS)


def call_environ(signer: Signer) -> dict:
    body = json.dumps(order_sign() | {"hookInstance": str(uuid.uuid4())}).encode()
    return {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": SERVICE_PATH,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8080",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)),
        "HTTP_AUTHORIZATION": signer.headers(BASE_URL + SERVICE_PATH)["Authorization"],
        "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http",
    }


def send(application: Flask, environ: dict) -> None:
    statuses: list[str] = []
    body = application(environ, lambda status, headers, exc_info=None: statuses.append(status))
    b"".join(body)
    if not statuses[0].startswith("200"):
        raise SystemExit(f"the benchmark call failed: {statuses[0]}")


def _timed_phases(application: Flask, calls: list[dict]) -> Counter[str]:
    """Per-phase seconds summed over ``calls``."""
    times: Counter[str] = Counter()
    with _phases(application, times):
        for environ in calls:
            send(application, environ)
    return times


@contextmanager
def _phases(application: Flask, times: Counter[str]) -> Iterator[None]:
    """Wrap each phase's function (module globals, so the callers pick the wrappers up)."""
    config = application.extensions["cds_hooks"]
    backend, blueprint = config.backend, cds_hooks.blueprint
    service = backend.catalogue["medication-safety"]
    targets: list[tuple[object, str, str]] = [
        (application, "wsgi_app", TOP_LEVEL),
        (config.authenticator, "authenticate", "JWT verification"),
        (app.web.hardening, "json_depth", "JSON depth limit"),
        (blueprint, "_parse_body", "JSON parse and request model"),
        (blueprint, "parse_context", "hook context"),
        (blueprint, "resolve_prefetch", "prefetch"),
        (backend, "advise", "advise: governance and model"),
        (backend, "_governance_reads", "  model status and recent overrides (worker cache)"),
        (app.serving.runs, "outside_intended_use", "  intended use (FHIRPath)"),
        (service.versions["1.0.0"].engine, "suggest", "  medication-safety engine"),
        (app.serving.runs, "apply_guardrails", "  guardrails"),
        (blueprint, "render_card", "card rendering"),
        (backend, "record_response", "durable record (one transaction)"),
        (app.audit.ledger, "append", "  ledger entry (leaf, MAC, insert)"),
        (application, "process_response", "after-request: metrics, access log, headers"),
    ]
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in targets]
    times.update({label: 0.0 for _, _, label in targets})  # rows come out in this order
    for (owner, name, label), (_, _, original) in zip(targets, originals, strict=True):
        setattr(owner, name, _timer(original, label, times))
    try:
        yield
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def _timer(function: Callable, label: str, times: Counter[str]) -> Callable:
    def timed(*args: object, **kwargs: object) -> object:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            times[label] += time.perf_counter() - started

    return timed


def _report(figures: dict[str, StoreFigures], calls: int) -> str:
    stores = list(figures)
    header = "| | " + " | ".join(LABELS[store] for store in stores) + " |"
    rule = "|---|" + "---|" * len(stores)
    lines = [
        "## One hook call in-process: CPU, database work, phases",
        "",
        f"`python -m bench.phases`: per store, {COUNTED} warm calls counted (SQLAlchemy events), "
        f"{calls // 2:,} calls straight through WSGI timed for CPU, then {calls - calls // 2:,} timed "
        "phase by phase. No gunicorn, network or load generator; the ledger sealed by `seal_now` "
        "(as one sealer thread would), not during the calls.",
        "",
        header.replace("| |", "| per warm hook call |", 1),
        rule,
        *_rows(figures, _call_rows()),
        "",
        header.replace("| |", "| ledger sealer |", 1),
        rule,
        *_rows(figures, _sealer_rows()),
        "",
        header.replace("| |", "| phase, µs per call |", 1),
        rule,
        *_phase_rows(figures, calls - calls // 2),
    ]
    return "\n".join(lines) + "\n"


Row = tuple[str, Callable[[StoreFigures, str], str]]


def _call_rows() -> list[Row]:
    return [
        ("CPU in the web process, ms", lambda f, _: f"{f.cpu_ms:.2f}"),
        ("CPU in the PostgreSQL backend, ms", lambda f, _: _optional(f.server_cpu_ms, "{:.2f}")),
        ("statements", lambda f, _: f"{f.call.statements:.1f}"),
        ("transactions (committed)", lambda f, _: f"{f.call.transactions:.1f} ({f.call.commits:.1f})"),
        ("pool checkouts", lambda f, _: f"{f.call.checkouts:.1f}"),
        ("round trips to the server", lambda f, s: _trips(f.call, s)),
    ]


def _sealer_rows() -> list[Row]:
    return [
        ("entries sealed per round (a round takes up to 1,000)", lambda f, _: f"{f.sealed_per_round:,.0f}"),
        ("statements per round", lambda f, _: f"{f.sealing.statements:.1f}"),
        (
            "transactions (committed) per round",
            lambda f, _: f"{f.sealing.transactions:.1f} ({f.sealing.commits:.1f})",
        ),
        ("round trips per round", lambda f, s: _trips(f.sealing, s)),
        ("CPU per entry sealed, sealing process, µs", lambda f, _: f"{f.sealing_cpu_us:.0f}"),
        (
            "CPU per entry sealed, PostgreSQL backend, µs",
            lambda f, _: _optional(f.sealing_server_cpu_us, "{:.0f}"),
        ),
        ("an idle worker's statements per second", lambda f, _: f"{f.idle.statements:.1f}"),
        ("an idle worker's round trips per second", lambda f, s: _trips(f.idle, s)),
    ]


def _rows(figures: dict[str, StoreFigures], rows: list[Row]) -> list[str]:
    return [
        f"| {label} | " + " | ".join(value(f, s) for s, f in figures.items()) + " |" for label, value in rows
    ]


def _trips(work: DatabaseWork, store: str) -> str:
    return f"{work.round_trips:.1f}" if store == "postgresql" else "none (in-process library)"


def _optional(value: float | None, pattern: str) -> str:
    return "n/a" if value is None else pattern.format(value)


def _phase_rows(figures: dict[str, StoreFigures], timed_calls: int) -> list[str]:
    def cells(seconds: Callable[[Counter[str]], float]) -> str:
        return " | ".join(f"{seconds(f.phases) / timed_calls * 1e6:,.0f}" for f in figures.values())

    labels = [label for label in next(iter(figures.values())).phases if label != TOP_LEVEL]
    top = [label for label in labels if not label.startswith("  ")]
    lines = [
        f"| {label.replace('  ', '&nbsp;&nbsp;')} | {cells(lambda t, phase=label: t[phase])} |"
        for label in labels
    ]
    rest = cells(lambda t: t[TOP_LEVEL] - sum(t[label] for label in top))
    lines.append(f"| Flask, Werkzeug and the rest | {rest} |")
    lines.append(f"| **whole call** | {cells(lambda t: t[TOP_LEVEL])} |")
    return lines


if __name__ == "__main__":
    main()
