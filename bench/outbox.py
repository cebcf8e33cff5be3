"""Outbox delivery benchmark: resources per second written to a FHIR server.

    python -m bench.outbox [--messages 300] [--workers 2] [--fhir embedded|hapi|both] [--warmup N]
                           [--database sqlite|postgresql|both]

Records N hook responses (each a card set with one card: RequestGroup, GuidanceResponse,
Provenance, AuditEvent and the model's Device), then times workers draining them side by side
(as `countersign worker` processes would; leases keep them apart). ``--fhir`` picks the server:
the embedded FHIR test server (Node, the default), HAPI FHIR (``make hapi-build`` first), or both
one after the other in the same run, each freshly started, so that their rates can be compared.
``--warmup N`` first delivers N untimed messages with one worker (a fresh JVM loads and compiles
HAPI's validator on its first writes). ``--database`` picks the store(s) the outbox lives in
(both by default, one after the other).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from joserfc import jwt
from joserfc.jwk import ECKey
from sqlmodel import Session, func, select

from app import DATABASE_KEY, WORKER_KEY, create_app
from app.audit.outbox import DEAD, DELIVERED, OutboxMessage
from app.governance.model_card import load_model_cards
from app.migrate import upgrade
from app.security.signing_key import ensure_signing_key
from app.settings import Settings, WriteBackServer
from app.writeback.worker import outbox_worker
from bench.counting import DatabaseWork, database_work
from bench.stores import LABELS, POSTGRES_URL, STORES, database
from cds_hooks.auth import TrustedClient
from sandbox.fhir_test_server import FhirTestServer
from sandbox.hapi_server import HapiServer
from smart_launch.sealing import generate_key
from tests.builders import full_prefetch, medication_request, order_sign_request

RESOURCES_PER_MESSAGE = 5
ISSUER = "https://bench-ehr.example"
SERVERS = {"embedded": "embedded FHIR test server (Node)", "hapi": "HAPI FHIR 8.8 JPA (H2)"}


@dataclass(frozen=True)
class Drained:
    server: str
    store: str
    started_in: float
    delivered: int
    dead: int
    elapsed: float
    #: What the workers asked of the database while draining, every thread of the process counted.
    work: DatabaseWork

    @property
    def rate(self) -> float:
        return self.delivered * RESOURCES_PER_MESSAGE / self.elapsed


def record_responses(app, key, count: int, fhir_base: str) -> None:
    client = app.test_client()
    audience = "http://localhost/cds-services/medication-safety"
    for index in range(count):
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": audience, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        token = jwt.encode({"alg": "ES384", "kid": "k", "typ": "JWT"}, claims, key, algorithms=["ES384"])
        body = order_sign_request([medication_request(f"d{index}")], full_prefetch(), fhirServer=fhir_base)
        response = client.post(
            "/cds-services/medication-safety", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, response.get_data(as_text=True)


@contextmanager
def fhir_server(kind: str) -> Iterator[tuple[str, float]]:
    """A fresh, empty server of that kind: its base URL and the seconds it took to be ready."""
    server = HapiServer() if kind == "hapi" else FhirTestServer()
    started = time.perf_counter()
    with server:
        yield server.base_url, time.perf_counter() - started


def drain(workers: list) -> None:
    """Every worker drains the outbox until it finds nothing to do, side by side."""

    def run(worker) -> None:
        while worker.run_once():
            pass

    threads = [threading.Thread(target=run, args=(worker,)) for worker in workers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def settled(app, status: str) -> int:
    with Session(app.extensions[DATABASE_KEY]) as session:
        return session.exec(select(func.count()).where(OutboxMessage.status == status)).one()


def measure(kind: str, store: str, key, jwk: dict, args: argparse.Namespace) -> Drained:
    with (
        tempfile.TemporaryDirectory() as scratch,
        database(store, Path(scratch), "outbox", args.postgres_url) as database_url,
        fhir_server(kind) as (fhir_base, started_in),
    ):
        upgrade(database_url)
        settings = Settings(
            database_url=database_url,
            public_base_url="http://localhost",
            trusted_clients=[TrustedClient(iss=ISSUER, jwks={"keys": [jwk]})],
            writeback_servers=[WriteBackServer(base_url=fhir_base)],
            outbox_in_process=False,
            ledger_seal_in_process=False,  # what the workers ask of the database is theirs alone
            log_level="WARNING",
            rate_limit_per_minute=10**9,
            data_keys=[generate_key()],
            ledger_keys=[generate_key()],
            signing_key_path=ensure_signing_key(Path(scratch) / "signing-key.pem"),
        )
        app = create_app(settings)
        workers = [
            app.extensions[WORKER_KEY],
            *(
                outbox_worker(settings, app.extensions[DATABASE_KEY], load_model_cards())
                for _ in range(args.workers - 1)
            ),
        ]
        if args.warmup:
            record_responses(app, key, args.warmup, fhir_base)
            drain(workers[:1])
        before = settled(app, DELIVERED)
        record_responses(app, key, args.messages, fhir_base)
        with database_work(app.extensions[DATABASE_KEY], this_thread_only=False) as work:
            started = time.perf_counter()
            drain(workers)
            elapsed = time.perf_counter() - started
        delivered = settled(app, DELIVERED) - before
        app.extensions["cds_hooks"].backend.governance.watcher.stop()
        return Drained(kind, store, started_in, delivered, settled(app, DEAD), elapsed, work)


def embedded_report(args: argparse.Namespace, results: list[Drained]) -> str:
    """The report of the default run: per store, the rate against the target."""
    rows = []
    for result in results:
        delivered, elapsed, rate = result.delivered, result.elapsed, result.rate
        work = result.work.per(delivered)
        trips = f"{work.round_trips:.0f}" if result.store == "postgresql" else "none (in-process library)"
        rows.append(
            f"| {LABELS[result.store]} | {delivered} | {result.dead} | {elapsed:.2f} | **{rate:,.0f}** "
            f"({'met' if rate >= 500 else 'not met'}) | {delivered / elapsed:,.0f} | "
            f"{work.statements:.1f} in {work.transactions:.1f} ({work.commits:.1f} committed) | {trips} |"
        )
    return "\n".join(
        [
            "## Outbox delivery (write-back to the FHIR test server)",
            "",
            f"`python -m bench.outbox --messages {args.messages} --workers {args.workers}`: per store, "
            f"{args.workers} worker(s) side by side drained the messages of {args.messages} card sets "
            f"({RESOURCES_PER_MESSAGE} resources each: Device, RequestGroup, GuidanceResponse, "
            "AI-Provenance, AuditEvent; every one a validated conditional create). Database work per "
            "message: SQLAlchemy's events, every thread, background ones included. Target ≥ 500 "
            "resources/s.",
            "",
            "| store | delivered | dead | drained in (s) | resources/s | messages/s | statements in "
            "transactions per message | round trips per message |",
            "|---|---:|---:|---:|---:|---:|---|---|",
            *rows,
            "",
        ]
    )


def comparison_report(args: argparse.Namespace, results: list[Drained]) -> str:
    """One row per server of the same run."""
    command = f"python -m bench.outbox --fhir {args.fhir} --messages {args.messages} --workers {args.workers}"
    command += f" --warmup {args.warmup}" if args.warmup else ""
    rows = [
        f"| {SERVERS[r.server]}, {LABELS[r.store]} | {r.started_in:.1f} | {r.delivered} | {r.dead} | "
        f"{r.elapsed:.2f} | **{r.rate:,.0f}** | {r.delivered / r.elapsed:,.1f} |"
        for r in results
    ]
    return "\n".join(
        [
            "## Outbox delivery by FHIR server",
            "",
            f"`{command}`: {args.workers} worker(s) side by side, {RESOURCES_PER_MESSAGE} resources per "
            "message (Device, RequestGroup, GuidanceResponse, AI-Provenance, AuditEvent; every one a "
            "conditional create), each server freshly started.",
            "",
            "| server | ready in (s) | delivered | dead | drained in (s) | resources/s | messages/s |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2, help="outbox workers draining side by side")
    parser.add_argument("--fhir", choices=[*SERVERS, "both"], default="embedded", help="FHIR server(s)")
    parser.add_argument("--warmup", type=int, default=0, help="untimed messages delivered first")
    parser.add_argument("--database", choices=[*STORES, "both"], default="both", help="the outbox's store(s)")
    parser.add_argument("--postgres-url", default=POSTGRES_URL, help="server and database to make schemas in")
    parser.add_argument("--append", type=Path, help="append the markdown result to this report")
    args = parser.parse_args()
    key = ECKey.generate_key("P-384")
    jwk = key.as_dict(private=False, kid="k")
    kinds = list(SERVERS) if args.fhir == "both" else [args.fhir]
    stores = list(STORES) if args.database == "both" else [args.database]
    results = [measure(kind, store, key, jwk, args) for kind in kinds for store in stores]
    if kinds == ["embedded"] and not args.warmup:
        report = embedded_report(args, results)
    else:
        report = comparison_report(args, results)
    print(report)
    if args.append:
        with args.append.open("a") as handle:
            handle.write("\n" + report)


if __name__ == "__main__":
    main()
