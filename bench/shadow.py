"""What a shadow version costs the clinician's answer: the same order-sign calls, in-process, with
medication-safety 1.1.0 paused and then in shadow beside the active 1.0.0.

    python -m bench.shadow [--calls 1000] [--database sqlite|postgresql|both] [--append FILE]

The shadow runs in the worker's shadow process after each response (``app.serving.shadow``): the
request path only queues the call; the shadow competes for CPU at a lower priority and, on
SQLite, for the one writer. Calls are sent back to back, as a saturated single-threaded worker
would serve them: more than a shadow can keep up with, so the bounded queue drops some.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from flask import Flask
from joserfc.jwk import RSAKey
from sqlalchemy import func, select

from app import DATABASE_KEY
from app.audit.tables import CardSet
from app.governance.change_control import Governor, change_status
from app.governance.model_card import MODEL_CARDS_KEY
from bench.hooks import Signer
from bench.phases import call_environ, in_process_app, send
from bench.stores import LABELS, POSTGRES_URL, STORES, database

WARM_UP = 200
BENCH_GOVERNOR = Governor("Practitioner/bench-cmio", "cmio")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=1000, help="timed calls per store and setting (1000)")
    parser.add_argument("--database", choices=[*STORES, "both"], default="both", help="store(s) to measure")
    parser.add_argument("--postgres-url", default=POSTGRES_URL, help="server and database to make schemas in")
    parser.add_argument("--append", type=Path, help="append the markdown table to this file")
    args = parser.parse_args()
    signer = Signer(RSAKey.generate_key(2048))
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for store in STORES if args.database == "both" else (args.database,):
            with database(store, Path(scratch), "shadow", args.postgres_url) as url:
                rows += _measure(store, in_process_app(url, Path(scratch), signer), signer, args.calls)
    report = "\n".join(
        [
            "## A shadow version beside the active one",
            "",
            f"`python -m bench.shadow`: {args.calls} order-sign calls one after another, in-process, "
            "per store and setting; medication-safety 1.1.0 paused, then in shadow (it runs in the "
            "worker's shadow process, nice 10, after each response; back-to-back calls outrun it, and the "
            "bounded queue drops what it cannot keep up with).",
            "",
            "| store | 1.1.0 | p50 ms | p95 ms | mean ms | shadow runs recorded | dropped (queue full) |",
            "|---|---|---|---|---|---|---|",
            *rows,
        ]
    )
    print(report)
    if args.append:
        with args.append.open("a") as output:
            output.write("\n" + report + "\n")


def _measure(store: str, application: Flask, signer: Signer, calls: int) -> list[str]:
    for _ in range(WARM_UP):
        send(application, call_environ(signer))
    rows = [_row(store, "paused", application, signer, calls)]
    registry = application.extensions[MODEL_CARDS_KEY]
    change_status(
        application.extensions[DATABASE_KEY],
        registry,
        registry.card("medication-safety", "1.1.0"),
        "shadow",
        governor=BENCH_GOVERNOR,
        reason="bench.shadow",
        writeback_target=None,
    )
    rows.append(_row(store, "shadow", application, signer, calls))
    return rows


def _row(store: str, setting: str, application: Flask, signer: Signer, calls: int) -> str:
    environs = [call_environ(signer) for _ in range(calls)]
    times = []
    for environ in environs:
        started = time.perf_counter()
        send(application, environ)
        times.append((time.perf_counter() - started) * 1000)
    application.extensions["cds_hooks"].backend.shadow.drain(timeout=300)
    with application.extensions[DATABASE_KEY].connect() as connection:
        shadows = connection.execute(select(func.count()).where(CardSet.disposition == "shadow")).scalar()
    p95 = statistics.quantiles(times, n=20)[-1]
    dropped = calls - shadows if setting == "shadow" else 0
    return (
        f"| {LABELS[store]} | {setting} | {statistics.median(times):.2f} | {p95:.2f} | "
        f"{statistics.fmean(times):.2f} | {shadows} | {dropped} |"
    )


if __name__ == "__main__":
    main()
