"""Hook benchmark: Countersign's medication-safety call against durable baselines, in one run.

    python -m bench.hooks [--database sqlite|postgresql|both] [--quick] [--long] [--preload N]
                          [--write docs/PERFORMANCE.md]

Per store, Countersign and its durable baseline (bare Flask plus one committed insert of the body's
hash, ``bench.bare_app``: the floor of recording every call before answering) run under gunicorn
with identical settings and take the same order-sign body; bare Flask, which records nothing, runs
beside them for reference. The load generator is a closed loop of keep-alive connections on the
same cores, so read the ratios within one run, not absolute numbers across runs. Then, per store:
a worker's memory after 5,000 calls (and 50,000 with ``--long``), and the growth step: N card sets
with their ledger entries preloaded (``bench.growth``), then the hook and ``countersign audit
verify`` measured again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests
from joserfc import jwt
from joserfc.jwk import RSAKey
from prometheus_client.parser import text_string_to_metric_families

from app.migrate import upgrade
from app.security.signing_key import ensure_signing_key
from app.wsgi_server import DEFAULT_THREADS as THREADS
from app.wsgi_server import default_workers
from bench.bare_app import DURABLE_URL, create_calls_table
from bench.growth import PRELOAD, Verified, preload, verify_ledger
from bench.load import LoadResult, RequestMaker, run_load
from bench.servers import Server, free_port, gunicorn
from bench.stores import LABELS, POSTGRES_URL, STORES, database, describe, footprint
from bench.workload import observations, order_sign
from smart_launch.sealing import generate_key

ISSUER = "https://bench-ehr.example"
KID = "bench-rs384"
SERVICE_PATH = "/cds-services/medication-safety"
#: What the benchmark's scrape presents to ``/metrics`` (``COUNTERSIGN_METRICS_TOKEN``).
METRICS_TOKEN = secrets.token_urlsafe(24)
#: The EHR's FHIR server that card sets are written back to (never reached: no delivery worker runs).
WRITEBACK_URL = "https://ehr.bench.invalid/fhir"
CONCURRENCY = ((1, 400), (8, 1500), (32, 2000))
#: Entries a second a full `audit verify` must reach on a preloaded ledger (issue #16).
VERIFY_TARGET = 100_000
MEMORY_MARKS = (5_000,)
LONG_MEMORY_MARKS = (5_000, 50_000)
#: Calls signed and sent at a time in the memory runs (every request is prepared before it is sent).
CHUNK = 2_500
BARE = "bare"


@dataclass(frozen=True)
class Signer:
    key: RSAKey

    def headers(self, audience: str) -> dict[str, str]:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": audience, "iat": now, "exp": now + 600, "jti": str(uuid.uuid4())}
        header = {"alg": "RS384", "kid": KID, "typ": "JWT"}
        token = jwt.encode(header, claims, self.key, algorithms=["RS384"])
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def jwks(self) -> dict:
        return {"keys": [self.key.as_dict(private=False, kid=KID, alg="RS384")]}


@dataclass(frozen=True)
class StoreRun:
    """Countersign and its durable baseline on one store, both serving."""

    store: str
    env: dict[str, str]
    baseline: Server
    countersign: Server
    log: Path

    @property
    def label(self) -> str:
        return LABELS[self.store]

    @property
    def hook_url(self) -> str:
        return self.countersign.url + SERVICE_PATH


#: Load results by (server, concurrency); the server is ``BARE``, a store, or ``baseline:<store>``.
Results = dict[tuple[str, int], LoadResult]


def countersign_environment(database_url: str, base_url: str, signer: Signer, metrics_dir: Path) -> dict:
    """Countersign as benchmarked: this signer trusted, metrics and the JSON access log on, no rate
    limit, ledger entries MAC'd and sealed in-process (the defaults), write-back configured as in
    production (every call enqueues an outbox message; the delivery workers, separate processes
    there, do not run here); a throw-away Provenance signing key beside the metrics directory."""
    return {
        "COUNTERSIGN_DATABASE_URL": database_url,
        "COUNTERSIGN_PUBLIC_BASE_URL": base_url,
        "COUNTERSIGN_TRUSTED_CLIENTS": json.dumps([{"iss": ISSUER, "jwks": signer.jwks()}]),
        "COUNTERSIGN_LOG_LEVEL": "INFO",
        "COUNTERSIGN_RATE_LIMIT_PER_MINUTE": str(10**9),
        "COUNTERSIGN_DATA_KEYS": generate_key(),
        "COUNTERSIGN_LEDGER_KEYS": generate_key(),
        "COUNTERSIGN_SIGNING_KEY_PATH": str(ensure_signing_key(metrics_dir.parent / "signing-key.pem")),
        "COUNTERSIGN_METRICS_TOKEN": METRICS_TOKEN,
        "COUNTERSIGN_WRITEBACK_SERVERS": json.dumps([{"base_url": WRITEBACK_URL}]),
        "COUNTERSIGN_WRITEBACK_DEFAULT_SERVER": WRITEBACK_URL,
        "COUNTERSIGN_OUTBOX_IN_PROCESS": "false",
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }


def request_maker(url: str, body: dict, signer: Signer) -> RequestMaker:
    """Request i: ``body`` under a fresh hookInstance, with a fresh token (its ``jti`` is spent)."""

    def make_request(_: int) -> tuple[bytes, dict[str, str]]:
        payload = body | {"hookInstance": str(uuid.uuid4())}
        return json.dumps(payload).encode(), signer.headers(url)

    return make_request


def load(url: str, body: dict, signer: Signer, concurrency: int, total: int) -> LoadResult:
    result = run_load(url, request_maker(url, body, signer), concurrency, total)
    if result.failures:
        failed = f"{result.failures} of {result.requests} requests to {url} failed"
        raise SystemExit(f"{failed}; the first: {result.first_failure}")
    return result


def measure(url: str, body: dict, signer: Signer, concurrency: int, total: int) -> LoadResult:
    """``total`` timed requests after an untimed warm-up at the same concurrency."""
    load(url, body, signer, concurrency, max(concurrency * 5, 20))
    return load(url, body, signer, concurrency, total)


def row(label: str, result: LoadResult) -> str:
    return (
        f"| {label} | {result.requests} | {result.throughput:,.0f} | {result.percentile(50):.1f} | "
        f"{result.percentile(95):.1f} | {result.percentile(99):.1f} |"
    )


@contextmanager
def store_servers(store: str, scratch: Path, signer: Signer, postgres_url: str) -> Iterator[StoreRun]:
    """Countersign and the durable baseline on fresh databases of ``store``, each its own."""
    directory = scratch / store
    directory.mkdir()
    workers = default_workers()
    with ExitStack() as stack:
        url = stack.enter_context(database(store, directory, "countersign", postgres_url))
        baseline_url = stack.enter_context(database(store, directory, "baseline", postgres_url))
        upgrade(url)
        create_calls_table(baseline_url)
        port, metrics, log = free_port(), directory / "metrics", directory / "countersign.log"
        metrics.mkdir()
        env = os.environ | countersign_environment(url, f"http://127.0.0.1:{port}", signer, metrics)
        baseline_env = os.environ | {DURABLE_URL: baseline_url}
        baseline_app = "bench.bare_app:create_durable_app()"
        baseline = stack.enter_context(gunicorn(baseline_app, free_port(), baseline_env, workers, THREADS))
        countersign = stack.enter_context(gunicorn("app:create_app()", port, env, workers, THREADS, log))
        yield StoreRun(store, env, baseline, countersign, log)


def main() -> None:
    args = _arguments()
    stores = STORES if args.database == "both" else (args.database,)
    scale = 0.2 if args.quick else 1.0
    signer = Signer(RSAKey.generate_key(2048))
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch, ExitStack() as stack:
        bare_app = "bench.bare_app:create_bare_app()"
        bare = stack.enter_context(
            gunicorn(bare_app, free_port(), dict(os.environ), default_workers(), THREADS)
        )
        runs = [
            stack.enter_context(store_servers(s, Path(scratch), signer, args.postgres_url)) for s in stores
        ]
        results = _load_results(bare.url, runs, signer, scale)
        lines = [
            *_report_header(runs, (load_before, os.getloadavg()[0])),
            *_concurrency_section(results, runs),
            *_targets_section(results, stores),
            *_prefetch_section(runs, signer, scale),
            *_memory_section(runs, signer, LONG_MEMORY_MARKS if args.long else MEMORY_MARKS),
            *(_growth_section(runs, signer, args.preload, scale) if args.preload else []),
            *_observability_section(runs),
        ]
    report = "\n".join(lines).rstrip() + "\n"
    print(report)
    if args.write:
        args.write.write_text(report)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=[*STORES, "both"], default="both", help="store(s) under test")
    parser.add_argument("--postgres-url", default=POSTGRES_URL, help="server and database to make schemas in")
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--long", action="store_true", help="memory after 50,000 calls too")
    parser.add_argument(
        "--preload", type=int, default=PRELOAD, help=f"card sets for the growth step (0: none; {PRELOAD:,})"
    )
    parser.add_argument("--write", type=Path, help="write the markdown report to this file")
    return parser.parse_args()


def _load_results(bare_url: str, runs: list[StoreRun], signer: Signer, scale: float) -> Results:
    """Each concurrency in turn, every server at it one after the other, so that drift in the
    machine's load shows in all of a concurrency's figures alike."""
    body, results = order_sign(), {}
    for concurrency, total in CONCURRENCY:
        count = max(int(total * scale), 50)
        servers = [(BARE, bare_url)]
        for run in runs:
            servers += [(f"baseline:{run.store}", run.baseline.url), (run.store, run.countersign.url)]
        for name, url in servers:
            results[name, concurrency] = measure(url + SERVICE_PATH, body, signer, concurrency, count)
            print(row(f"{_server_label(name)}, c={concurrency}", results[name, concurrency]), flush=True)
    return results


def _server_label(name: str) -> str:
    if name == BARE:
        return "bare Flask"
    if name.startswith("baseline:"):
        return f"durable baseline, {LABELS[name.split(':')[1]]}"
    return f"Countersign, {LABELS[name]}"


def _share(results: Results, server: str, of: str, concurrency: int) -> float:
    return results[server, concurrency].throughput / results[of, concurrency].throughput


def _report_header(runs: list[StoreRun], load_average: tuple[float, float]) -> list[str]:
    stores = "; ".join(f"{run.label}: {describe(run.env['COUNTERSIGN_DATABASE_URL'])}" for run in runs)
    return [
        "# Performance",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `python -m bench.hooks` (`make bench`) on "
        f"{platform.machine()} with {os.cpu_count()} cores, Python {sys.version.split()[0]}.",
        f"Stores: {stores}.",
        f"Every server: gunicorn gthread, {default_workers()} workers x {THREADS} threads, on loopback; the "
        "load generator runs on the same cores. Caveat: these machines are shared and noisy (1-minute "
        f"load average {load_average[0]:.1f} before the run, {load_average[1]:.1f} after the concurrency "
        "runs), so compare ratios within one run, not absolute numbers across runs.",
        "",
        "Every server takes the same requests: an RS384 JWT and a realistic order-sign body (Patient, "
        "16 Conditions, 8 active MedicationRequests, 40 Observations, 2 draft orders). Countersign "
        "verifies the JWT, stores its `jti` and records the response (card set, cards, MAC'd ledger "
        "entry, outbox message for write-back) in one transaction before it answers; its ledger is "
        "sealed in-process, its outbox left to delivery workers that do not run here. The durable "
        "baseline inserts the body's SHA-256 and commits before it answers, on the same store: the "
        "floor of recording every call. Bare Flask records nothing.",
        "What the figures mean: `docs/PERFORMANCE-ANALYSIS.md`; sizing: `docs/DEPLOYMENT.md`.",
        "",
    ]


def _concurrency_section(results: Results, runs: list[StoreRun]) -> list[str]:
    lines = [
        "## Throughput and latency by concurrency",
        "",
        "| server, concurrency | requests | req/s | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|",
        *(row(f"{_server_label(name)}, c={c}", result) for (name, c), result in results.items()),
        "",
        "| Countersign's throughput as a share of | c=1 | c=8 | c=32 |",
        "|---|---|---|---|",
    ]
    for run in runs:
        for of, label in ((f"baseline:{run.store}", "durable baseline"), (BARE, "bare Flask")):
            shares = " | ".join(f"{_share(results, run.store, of, c):.0%}" for c, _ in CONCURRENCY)
            lines.append(f"| {run.label}: {label} | {shares} |")
    return [*lines, ""]


def _targets_section(results: Results, stores: tuple[str, ...]) -> list[str]:
    """The issue's targets, each a ratio or a percentile within this run."""
    targets: list[tuple[str, str, bool]] = []
    if "postgresql" in stores:
        share = _share(results, "postgresql", "baseline:postgresql", 8)
        c8, c32 = (results["postgresql", c].throughput for c in (8, 32))
        p95 = results["postgresql", 8].percentile(95)
        targets += [
            (
                "PostgreSQL c=8 throughput ≥ 50 % of the PostgreSQL durable baseline",
                f"{share:.0%}",
                share >= 0.5,
            ),
            (
                "PostgreSQL c=32 throughput ≥ c=8 throughput (no collapse)",
                f"{c32 / c8:.0%} of c=8",
                c32 >= c8,
            ),
            ("PostgreSQL p95 at c=8 ≤ 15 ms", f"{p95:.1f} ms", p95 <= 15),
        ]
    if "sqlite" in stores:
        share = _share(results, "sqlite", "baseline:sqlite", 8)
        targets.append(
            ("SQLite c=8 throughput ≥ 60 % of the SQLite durable baseline", f"{share:.0%}", share >= 0.6)
        )
    rows = [f"| {target} | {measured} | {_verdict(met)} |" for target, measured, met in targets]
    return ["## Targets", "", "| target | this run | |", "|---|---|---|", *rows, ""]


def _prefetch_section(runs: list[StoreRun], signer: Signer, scale: float) -> list[str]:
    lines = [
        "## Prefetch size (Countersign, c=1)",
        "",
        "| store, Observations in prefetch | requests | req/s | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    largest = {}
    for run in runs:
        for size, total in ((10, 100), (100, 100), (1000, 50), (10000, 20)):
            body = order_sign()
            body["prefetch"]["renalFunction"]["entry"] = [{"resource": r} for r in observations(size)]
            result = measure(run.hook_url, body, signer, 1, max(int(total * scale), 10))
            lines.append(row(f"{run.label}, {size:,}", result))
            print(lines[-1], flush=True)
        largest[run.label] = result.percentile(95)
    verdicts = "; ".join(f"{name} p95 {p95:.0f} ms: {_verdict(p95 <= 250)}" for name, p95 in largest.items())
    return [*lines, "", f"Target: a 10,000-resource prefetch answers in ≤ 250 ms ({verdicts}).", ""]


def _memory_section(runs: list[StoreRun], signer: Signer, marks: tuple[int, ...]) -> list[str]:
    """Each worker's VmRSS once the server has answered ``marks`` hook calls in all (c=8), with
    what the store holds by then."""
    lines = [
        "## Memory, storage and connections",
        "",
        "Resident memory (`VmRSS`) of each Countersign worker process once the server has answered "
        "that many hook calls in all, the earlier sections' included (mostly the order-sign body, c=8); "
        "the database's size (tables, indexes) per card set recorded; the connections Countersign's "
        "workers hold open to PostgreSQL (the governance listeners' not included: one more per worker).",
        "",
        "| store | hook calls | workers | mean RSS MiB | largest RSS MiB | KiB per call on disk "
        "| connections |",
        "|---|---|---|---|---|---|---|",
    ]
    body = order_sign()
    for run in runs:
        answered = _hook_calls(run.countersign.url)
        for mark in marks:
            while answered < mark:
                answered += load(run.hook_url, body, signer, 8, min(CHUNK, mark - answered)).requests
            lines.append(_memory_row(run, mark))
            print(lines[-1], flush=True)
    return [*lines, ""]


def _memory_row(run: StoreRun, calls: int) -> str:
    rss = [kib / 1024 for kib in run.countersign.worker_rss_kib()]
    held = footprint(run.env["COUNTERSIGN_DATABASE_URL"])
    connections = "n/a" if held.connections is None else str(held.connections)
    return (
        f"| {run.label} | {calls:,} | {len(rss)} | {sum(rss) / len(rss):.0f} | {max(rss):.0f} | "
        f"{held.bytes_per_call / 1024:.1f} | {connections} |"
    )


def _growth_section(runs: list[StoreRun], signer: Signer, count: int, scale: float) -> list[str]:
    """Per store: the hook at c=8 and a full verify before and after ``count`` calls' records are
    preloaded, then an incremental verify once as many calls again have been answered."""
    load_rows, verify_rows = [], []
    for run in runs:
        load_row, rows = _grow(run, signer, count, max(int(CONCURRENCY[1][1] * scale), 50))
        load_rows.append(load_row)
        verify_rows += rows
        print(load_row, *rows, sep="\n", flush=True)
    return [
        f"## Growth: {count:,} calls already recorded",
        "",
        f"`bench.growth` appends {count:,} card sets (one card each) and their ledger entries, MAC'd, "
        "chained and sealed in batches as the sealer leaves them, to each store in bulk (PostgreSQL: "
        "INSERT … SELECT generate_series and COPY; SQLite: INSERT … SELECT over a recursive series "
        "and one executemany transaction). The hook is measured at c=8 just before and after. "
        "`countersign audit verify` runs as an operator runs it, in a process of its own that forks "
        "one walker per core (`--jobs`, default the number of cores): wall time including the "
        "process's start (about 1.5 s), entries/s as that wall time gives them, peak RSS the largest "
        "`VmHWM` of the command and its walkers, sampled every 50 ms. `--full` before and after the "
        "preload, then incremental (from the checkpoint the full run left) once the c=8 run has "
        "answered as many calls again.",
        "",
        "| store | card sets loaded in | ledger entries loaded in | c=8 req/s before → after | "
        "c=8 p95 ms before → after |",
        "|---|---|---|---|---|",
        *load_rows,
        "",
        "| store, `audit verify` | seconds | entries/s | peak RSS MiB | what it reported |",
        "|---|---|---|---|---|",
        *verify_rows,
        "",
        "Targets: a full verify runs in constant memory (peak RSS after the preload within 10 % of the "
        f"peak before it) and verifies ≥ {VERIFY_TARGET:,} entries/s (after the preload, process "
        "start included).",
        "",
    ]


def _grow(run: StoreRun, signer: Signer, count: int, total: int) -> tuple[str, list[str]]:
    body = order_sign()
    before = measure(run.hook_url, body, signer, 8, total)
    small = verify_ledger(_cli_env(run), "--full")
    loaded = preload(run.env["COUNTERSIGN_DATABASE_URL"], run.env["COUNTERSIGN_LEDGER_KEYS"], count)
    full = verify_ledger(_cli_env(run), "--full")
    after = measure(run.hook_url, body, signer, 8, total)
    incremental = verify_ledger(_cli_env(run))
    load_row = (
        f"| {run.label} | {loaded.card_sets_seconds:.1f} s | {loaded.ledger_seconds:.1f} s | "
        f"{before.throughput:,.0f} → {after.throughput:,.0f} | "
        f"{before.percentile(95):.1f} → {after.percentile(95):.1f} |"
    )
    verify_rows = [
        _verify_row(run.label, "before the preload, full", small),
        _verify_row(run.label, "after, full", full, small),
        _verify_row(run.label, "after, incremental", incremental),
    ]
    return load_row, verify_rows


def _verify_row(store: str, when: str, run: Verified, reference: Verified | None = None) -> str:
    memory, rate = "", ""
    if reference is not None:
        growth = run.peak_rss_kib / reference.peak_rss_kib - 1
        memory = f" ({growth:+.1%}: {_verdict(growth <= 0.10)})"
        rate = f" ({_verdict(run.entries_per_second >= VERIFY_TARGET)})"
    lines = run.output.splitlines()
    reported = next((line for line in lines if line.startswith("ledger")), lines[-1]).replace("|", "/")
    return (
        f"| {store}, {when} | {run.seconds:.1f} | {run.entries_per_second:,.0f}{rate} | "
        f"{run.peak_rss_kib / 1024:.0f}{memory} | {reported} |"
    )


def _verdict(met: bool) -> str:
    return "met" if met else "not met"


def _cli_env(run: StoreRun) -> dict[str, str]:
    """The server's settings, without its metrics directory (the command is not one of its workers)."""
    return {name: value for name, value in run.env.items() if name != "PROMETHEUS_MULTIPROC_DIR"}


def _hook_calls(base_url: str) -> int:
    """Hook requests the server has answered, from its own ``/metrics``."""
    scrape = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    scraped = requests.get(base_url + "/metrics", headers=scrape, timeout=10).text
    return int(
        sum(
            sample.value
            for family in text_string_to_metric_families(scraped)
            for sample in family.samples
            if sample.name == "countersign_http_requests_total" and sample.labels.get("service")
        )
    )


def _observability_section(runs: list[StoreRun]) -> list[str]:
    """Proof that the figures were taken with metrics and logging on."""
    counts = "; ".join(
        f"{run.label}: `/metrics` counted {_hook_calls(run.countersign.url):,} hook requests, "
        f"{len(run.log.read_text().splitlines()):,} log lines written"
        for run in runs
    )
    return [
        "## Observability during the run",
        "",
        f"Metrics on (gunicorn multiprocess mode) and logging on (JSON, INFO, PHI filter). {counts}.",
        "",
    ]


if __name__ == "__main__":
    main()
