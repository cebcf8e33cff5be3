"""Hook benchmark: Countersign's medication-safety call against a bare Flask endpoint, same run.

    python -m bench.hooks [--quick] [--write docs/PERFORMANCE.md]

Both servers run under gunicorn with identical settings; the load generator is a closed loop of
keep-alive connections on the same machine, so read the ratios, not the absolute numbers.
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
from bench.load import LoadResult, run_load
from bench.servers import free_port, gunicorn
from bench.workload import observations, order_sign
from smart_launch.sealing import generate_key

ISSUER = "https://bench-ehr.example"
KID = "bench-rs384"
SERVICE_PATH = "/cds-services/medication-safety"
#: What the benchmark's scrape presents to ``/metrics`` (``COUNTERSIGN_METRICS_TOKEN``).
METRICS_TOKEN = secrets.token_urlsafe(24)


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


def countersign_environment(database_url: str, base_url: str, signer: Signer, metrics_dir: Path) -> dict:
    """Countersign as benchmarked: this signer trusted, metrics and the JSON access log on, no rate
    limit; a throw-away Provenance signing key beside the metrics directory."""
    return {
        "COUNTERSIGN_DATABASE_URL": database_url,
        "COUNTERSIGN_PUBLIC_BASE_URL": base_url,
        "COUNTERSIGN_TRUSTED_CLIENTS": json.dumps([{"iss": ISSUER, "jwks": signer.jwks()}]),
        "COUNTERSIGN_LOG_LEVEL": "INFO",
        "COUNTERSIGN_RATE_LIMIT_PER_MINUTE": str(10**9),
        "COUNTERSIGN_DATA_KEYS": generate_key(),
        "COUNTERSIGN_SIGNING_KEY_PATH": str(ensure_signing_key(metrics_dir.parent / "signing-key.pem")),
        "COUNTERSIGN_METRICS_TOKEN": METRICS_TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
    }


def measure(url: str, body: dict, signer: Signer, concurrency: int, total: int) -> LoadResult:
    def make_request(_: int) -> tuple[bytes, dict[str, str]]:
        payload = body | {"hookInstance": str(uuid.uuid4())}
        return json.dumps(payload).encode(), signer.headers(url)

    warmup = run_load(url, make_request, concurrency, max(concurrency * 5, 20))
    if warmup.failures:
        raise SystemExit(f"warm-up against {url} failed {warmup.failures} times")
    result = run_load(url, make_request, concurrency, total)
    if result.failures:
        raise SystemExit(f"{result.failures} of {result.requests} requests to {url} failed")
    return result


def row(label: str, result: LoadResult) -> str:
    return (
        f"| {label} | {result.requests} | {result.throughput:,.0f} | {result.percentile(50):.1f} | "
        f"{result.percentile(95):.1f} | {result.percentile(99):.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer requests (a smoke run)")
    parser.add_argument("--write", type=Path, help="write the markdown report to this file")
    args = parser.parse_args()
    scale = 0.2 if args.quick else 1.0
    signer = Signer(RSAKey.generate_key(2048))
    workers = default_workers()
    with tempfile.TemporaryDirectory() as scratch:
        database_url = f"sqlite:///{Path(scratch) / 'bench.db'}"
        upgrade(database_url)
        bare_port, app_port = free_port(), free_port()
        metrics_dir = Path(scratch) / "metrics"
        metrics_dir.mkdir()
        env = os.environ | countersign_environment(
            database_url, f"http://127.0.0.1:{app_port}", signer, metrics_dir
        )
        lines = _report_header(workers)
        log = Path(scratch) / "countersign.log"
        with (
            gunicorn("bench.bare_app:create_bare_app()", bare_port, env, workers, THREADS) as bare,
            gunicorn("app:create_app()", app_port, env, workers, THREADS, log) as countersign,
        ):
            lines += _concurrency_section(bare + SERVICE_PATH, countersign + SERVICE_PATH, signer, scale)
            lines += _prefetch_section(countersign + SERVICE_PATH, signer, scale)
            lines += _observability_section(countersign, log)
    report = "\n".join(lines) + "\n"
    print(report)
    if args.write:
        args.write.write_text(report)


def _observability_section(base_url: str, log: Path) -> list[str]:
    """Proof that the figures were taken with metrics and logging on."""
    scrape = {"Authorization": f"Bearer {METRICS_TOKEN}"}
    scraped = requests.get(base_url + "/metrics", headers=scrape, timeout=10).text
    counted = sum(
        sample.value
        for family in text_string_to_metric_families(scraped)
        for sample in family.samples
        if sample.name == "countersign_http_requests_total" and sample.labels.get("service")
    )
    lines = log.read_text().splitlines()
    return [
        "## Observability during the run",
        "",
        f"Metrics on (gunicorn multiprocess mode): `/metrics` counted {counted:,.0f} hook requests; "
        f"logging on (JSON, INFO, PHI filter): {len(lines):,} log lines written.",
        "",
    ]


def _report_header(workers: int) -> list[str]:
    return [
        "# Performance",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `python -m bench.hooks --write docs/PERFORMANCE.md` "
        f"on {platform.machine()} with {os.cpu_count()} cores, Python {sys.version.split()[0]}.",
        f"Both servers: gunicorn gthread, {workers} workers x {THREADS} threads, on loopback; the load "
        "generator runs on the same cores. Caveat: these machines are shared and noisy, so compare the "
        "ratio within one run, not absolute numbers across runs.",
        "",
        "Countersign requests carry an RS384 JWT (verified, `jti` stored), a realistic order-sign body "
        "(Patient, 16 Conditions, 8 active MedicationRequests, 40 Observations, 2 draft orders) and are "
        "recorded durably in SQLite (WAL) before the response.",
        "What the figures mean and what is left to do: `docs/PERFORMANCE-ANALYSIS.md`.",
        "",
    ]


def _concurrency_section(bare_url: str, app_url: str, signer: Signer, scale: float) -> list[str]:
    lines = [
        "## Throughput and latency by concurrency",
        "",
        "| server, concurrency | requests | req/s | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    ratios, shares = [], {}
    body = order_sign()
    for concurrency, total in ((1, 400), (8, 1500), (32, 2000)):
        count = max(int(total * scale), 50)
        bare = measure(bare_url, body, signer, concurrency, count)
        ours = measure(app_url, body, signer, concurrency, count)
        lines += [row(f"bare Flask, c={concurrency}", bare), row(f"medication-safety, c={concurrency}", ours)]
        ratios.append(f"c={concurrency}: {ours.throughput / bare.throughput:.0%}")
        shares[concurrency] = (ours.throughput / bare.throughput, ours.percentile(95))
        print(lines[-2], lines[-1], sep="\n", flush=True)
    share, p95 = shares[8]
    verdict = (
        f"Targets at c=8: ≥ 35 % of bare Flask ({share:.0%}: {'met' if share >= 0.35 else 'not met'}), "
        f"p95 ≤ 15 ms ({p95:.1f} ms: {'met' if p95 <= 15 else 'not met'})."
    )
    summary = f"Countersign throughput as a share of bare Flask: {', '.join(ratios)}."
    return [*lines, "", summary, verdict, ""]


def _prefetch_section(app_url: str, signer: Signer, scale: float) -> list[str]:
    lines = [
        "## Prefetch size (medication-safety, c=1)",
        "",
        "| Observations in prefetch | requests | req/s | p50 ms | p95 ms | p99 ms |",
        "|---|---|---|---|---|---|",
    ]
    for size, total in ((10, 100), (100, 100), (1000, 50), (10000, 20)):
        body = order_sign()
        body["prefetch"]["renalFunction"]["entry"] = [{"resource": r} for r in observations(size)]
        result = measure(app_url, body, signer, 1, max(int(total * scale), 10))
        lines.append(row(f"{size:,}", result))
        print(lines[-1], flush=True)
    p95 = result.percentile(95)
    verdict = f"Target: a 10,000-resource prefetch answers in ≤ 250 ms (p95 {p95:.0f} ms: "
    return [*lines, "", verdict + ("met)." if p95 <= 250 else "not met)."), ""]


if __name__ == "__main__":
    main()
