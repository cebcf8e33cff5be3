"""Where one hook call's time goes: the benchmark's call, in-process, timed phase by phase.

    python -m bench.phases [--calls 2000] [--append docs/PERFORMANCE.md]

No gunicorn, no network and no load generator: the same order-sign call and settings as
``bench.hooks`` go straight through the WSGI application, and each phase is timed by wrapping the
function that does it. The split tells what a change on the hook path can win before it is
measured under load.
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
from pathlib import Path

from flask import Flask
from joserfc.jwk import RSAKey

import app.serving.backend
import app.web.hardening
import cds_hooks.blueprint
from app import create_app
from app.migrate import upgrade
from bench.hooks import SERVICE_PATH, Signer, countersign_environment
from bench.workload import order_sign

BASE_URL = "http://127.0.0.1:8080"
WARM_UP = 200
TOP_LEVEL = "whole call (WSGI)"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=2000, help="timed calls (default 2000)")
    parser.add_argument("--append", type=Path, help="append the markdown table to this file")
    args = parser.parse_args()
    signer = Signer(RSAKey.generate_key(2048))
    with tempfile.TemporaryDirectory() as scratch:
        application = _application(Path(scratch), signer)
        calls = [_environ(signer) for _ in range(WARM_UP + args.calls)]
        for environ in calls[:WARM_UP]:
            _send(application, environ)
        times, cpu_ms = _timed(application, calls[WARM_UP:])
    report = _table(times, args.calls, cpu_ms)
    print(report)
    if args.append:
        with args.append.open("a") as output:
            output.write("\n" + report)


def _application(scratch: Path, signer: Signer) -> Flask:
    database_url = f"sqlite:///{scratch / 'phases.db'}"
    upgrade(database_url)
    metrics_dir = scratch / "metrics"
    metrics_dir.mkdir()
    os.environ.update(countersign_environment(database_url, BASE_URL, signer, metrics_dir))
    application = create_app()
    log_file = (scratch / "countersign.log").open("a")
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(log_file)  # the JSON access log is written, as in production
    return application


def _environ(signer: Signer) -> dict:
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


def _send(application: Flask, environ: dict) -> None:
    statuses: list[str] = []
    body = application(environ, lambda status, headers, exc_info=None: statuses.append(status))
    b"".join(body)
    if not statuses[0].startswith("200"):
        raise SystemExit(f"the benchmark call failed: {statuses[0]}")


def _timed(application: Flask, calls: list[dict]) -> tuple[Counter[str], float]:
    """Per-phase seconds summed over ``calls``, and CPU milliseconds per call (unwrapped run)."""
    started = time.process_time()
    for environ in calls[: len(calls) // 2]:
        _send(application, environ)
    cpu_ms = (time.process_time() - started) / (len(calls) // 2) * 1000
    times: Counter[str] = Counter()
    with _phases(application, times):
        for environ in calls[len(calls) // 2 :]:
            _send(application, environ)
    return times, cpu_ms


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
        (app.serving.backend, "current_status", "  model status read"),
        (app.serving.backend, "recent_override_rules", "  recent overrides read"),
        (app.serving.backend, "outside_intended_use", "  intended use (FHIRPath)"),
        (service.engine, "suggest", "  medication-safety engine"),
        (app.serving.backend, "apply_guardrails", "  guardrails"),
        (blueprint, "render_card", "card rendering"),
        (backend, "record_response", "durable record (one transaction)"),
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


def _table(times: Counter[str], calls: int, cpu_ms: float) -> str:
    timed_calls = calls - calls // 2
    top = [label for label in times if label != TOP_LEVEL and not label.startswith("  ")]
    rest = times[TOP_LEVEL] - sum(times[label] for label in top)
    rows = [(label, times[label]) for label in times if label != TOP_LEVEL]
    rows.append(("Flask, Werkzeug and the rest", rest))
    lines = [
        "## One hook call, phase by phase (in-process)",
        "",
        f"`python -m bench.phases`: {calls // 2:,} calls straight through WSGI cost {cpu_ms:.2f} ms of "
        f"CPU each; then {timed_calls:,} calls timed by phase (indented rows are part of the row above).",
        "",
        "| phase | µs per call |",
        "|---|---|",
    ]
    for label, seconds in rows:
        lines.append(f"| {label.replace('  ', '&nbsp;&nbsp;')} | {seconds / timed_calls * 1e6:,.0f} |")
    lines.append(f"| **whole call** | **{times[TOP_LEVEL] / timed_calls * 1e6:,.0f}** |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
