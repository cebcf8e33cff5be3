"""A ``countersign worker`` process killed with SIGKILL in the middle of its run, and the recovery
after it: the fault tests run it against the embedded FHIR test server and against HAPI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from flask import Flask

from app import WORKER_KEY
from app.audit.outbox import DELIVERED
from app.settings import Settings
from tests.writeback_helpers import drain, statuses


def kill_a_worker_mid_run(app: Flask, settings: Settings, kill_after: int) -> int:
    """Runs ``countersign worker`` as a process of its own on the app's database and write-back
    servers, kills it with SIGKILL once at least ``kill_after`` messages are delivered (mid-batch,
    its leases held), waits for those leases to run out and lets the app's worker finish.

    Returns how many messages were delivered when the worker was killed."""
    servers = [{"base_url": server.base_url} for server in settings.writeback_servers]
    env = os.environ | {
        "COUNTERSIGN_DATABASE_URL": settings.database_url,
        "COUNTERSIGN_PUBLIC_BASE_URL": settings.public_base_url,
        "COUNTERSIGN_WRITEBACK_SERVERS": json.dumps(servers),
        "COUNTERSIGN_OUTBOX_LEASE_SECONDS": str(settings.outbox_lease_seconds),
        "COUNTERSIGN_OUTBOX_BATCH_SIZE": str(settings.outbox_batch_size),
        "COUNTERSIGN_OUTBOX_IN_PROCESS": "false",
        "COUNTERSIGN_LOG_LEVEL": "WARNING",
    }
    worker = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env)
    try:
        deadline = time.monotonic() + 60
        while statuses(app).get(DELIVERED, 0) < kill_after and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    delivered = statuses(app).get(DELIVERED, 0)
    time.sleep(settings.outbox_lease_seconds + 0.2)
    drain(app.extensions[WORKER_KEY], rounds=100)
    return delivered
