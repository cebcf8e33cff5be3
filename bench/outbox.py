"""Outbox delivery benchmark: resources per second written to the FHIR test server.

    python -m bench.outbox [--messages 300]

Records N hook responses (each a card set with one card: RequestGroup, GuidanceResponse,
Provenance, AuditEvent and the model's Device), then times workers draining them side by side
(as `countersign worker` processes would; leases keep them apart).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import ec

from app import DATABASE_KEY, WORKER_KEY, create_app
from app.audit.fhir_writer import WriteBackServer
from app.audit.worker import outbox_worker
from app.fhir_test_server import FhirTestServer
from app.migrate import upgrade
from app.registry import load_model_cards
from app.settings import Settings
from cds_hooks.auth import TrustedClient
from tests.builders import full_prefetch, medication_request, order_sign_request

RESOURCES_PER_MESSAGE = 5
ISSUER = "https://bench-ehr.example"


def record_responses(app, key, count: int, fhir_base: str) -> None:
    client = app.test_client()
    audience = "http://localhost/cds-services/medication-safety"
    for index in range(count):
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": audience, "iat": now, "exp": now + 300, "jti": str(uuid.uuid4())}
        token = jwt.encode(claims, key, algorithm="ES384", headers={"kid": "k", "typ": "JWT"})
        body = order_sign_request([medication_request(f"d{index}")], full_prefetch(), fhirServer=fhir_base)
        response = client.post(
            "/cds-services/medication-safety", json=body, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 200, response.get_data(as_text=True)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2, help="outbox workers draining side by side")
    parser.add_argument("--append", type=Path, help="append the markdown result to this report")
    args = parser.parse_args()
    key = ec.generate_private_key(ec.SECP384R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())) | {"kid": "k"}
    with tempfile.TemporaryDirectory() as scratch, FhirTestServer() as fhir:
        database_url = f"sqlite:///{Path(scratch) / 'outbox.db'}"
        upgrade(database_url)
        settings = Settings(
            database_url=database_url,
            public_base_url="http://localhost",
            trusted_clients=[TrustedClient(iss=ISSUER, jwks={"keys": [jwk]})],
            writeback_servers=[WriteBackServer(base_url=fhir.base_url)],
            outbox_in_process=False,
            log_level="WARNING",
            rate_limit_per_minute=10**9,
        )
        app = create_app(settings)
        record_responses(app, key, args.messages, fhir.base_url)
        workers = [
            app.extensions[WORKER_KEY],
            *(
                outbox_worker(settings, app.extensions[DATABASE_KEY], load_model_cards())
                for _ in range(args.workers - 1)
            ),
        ]
        counts = [0] * len(workers)

        def drain(index: int) -> None:
            while settled := workers[index].run_once():
                counts[index] += settled

        started = time.perf_counter()
        threads = [threading.Thread(target=drain, args=(index,)) for index in range(len(workers))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        delivered = sum(counts)
    rate = delivered * RESOURCES_PER_MESSAGE / elapsed
    report = "\n".join(
        [
            "## Outbox delivery (write-back to the FHIR test server)",
            "",
            f"`python -m bench.outbox --messages {args.messages} --workers {args.workers}`: {args.workers} "
            f"worker(s) side by side drained {delivered} messages "
            f"({delivered * RESOURCES_PER_MESSAGE} resources: Device, RequestGroup, GuidanceResponse, "
            f"AI-Provenance, AuditEvent per card set; every one a validated conditional create) in "
            f"{elapsed:.2f} s: **{rate:,.0f} resources/s** ({delivered / elapsed:,.0f} messages/s); "
            f"target ≥ 500 resources/s: {'met' if rate >= 500 else 'not met'}.",
            "",
        ]
    )
    print(report)
    if args.append:
        with args.append.open("a") as handle:
            handle.write(report)


if __name__ == "__main__":
    main()
