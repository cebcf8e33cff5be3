"""Cold start: from ``countersign serve --workers 2`` to the first ready ``/readyz``, and what the
server's processes hold in memory once they are up.

    python -m bench.startup [--runs 5] [--workers 2] [--append FILE]

Each run starts a fresh process tree on a migrated SQLite store (the demo's; the schema is made
before the clock starts) and polls ``/readyz`` every 5 ms. Memory is read from
``/proc/<pid>/smaps_rollup`` of the master and each worker a second after the first ready answer:
RSS, PSS (each shared page split among the processes that map it, so the PSS of all processes adds
up to what the server really occupies), private and shared. Then the parts of a start, each timed
alone in a fresh interpreter: importing the application, and building it (``create_app``).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from joserfc.jwk import RSAKey

from app.migrate import upgrade
from bench.growth import COUNTERSIGN
from bench.hooks import Signer, countersign_environment
from bench.servers import child_pids, free_port, proc_kib, wait_until_answering

TARGET_SECONDS = 1.0
POLL_SECONDS = 0.005
SETTLE_SECONDS = 1.0
#: Each part of a start (what it needs first, what is timed), in an interpreter of its own: the
#: module cache is per process.
PARTS = {
    "import the application (`import app.cli`)": ("", "import app.cli"),
    "build it (`create_app()`, after the import)": ("from app import create_app", "create_app()"),
}


@dataclass(frozen=True)
class Memory:
    """A process's memory in KiB, from ``smaps_rollup``."""

    role: str
    figures: dict[str, int]

    def mib(self, *fields: str) -> float:
        return sum(self.figures.get(field, 0) for field in fields) / 1024


@dataclass(frozen=True)
class Start:
    seconds: float
    memory: list[Memory]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="cold starts to time (5)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (2)")
    parser.add_argument("--append", type=Path, help="append the markdown section to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        env = environment(Path(scratch))
        starts = []
        for run in range(1, args.runs + 1):
            starts.append(cold_start(env, args.workers))
            print(f"run {run}: ready in {starts[-1].seconds:.2f} s", file=sys.stderr, flush=True)
        parts = {label: _part_seconds(env, *code) for label, code in PARTS.items()}
        respawns = [respawn(env) for _ in range(args.runs)]
    report = "\n".join(_section(starts, parts, respawns, args.workers))
    print(report)
    if args.append:
        with args.append.open("a") as output:
            output.write("\n" + report + "\n")


def environment(scratch: Path) -> dict[str, str]:
    url = f"sqlite:///{scratch / 'startup.db'}"
    upgrade(url)
    metrics = scratch / "metrics"
    metrics.mkdir()
    signer = Signer(RSAKey.generate_key(2048))
    return os.environ | countersign_environment(url, "http://127.0.0.1", signer, metrics)


def cold_start(env: dict[str, str], workers: int) -> Start:
    """One cold start, timed from the command to the first 200 on ``/readyz``."""
    with _serving(env, workers) as (process, _, seconds):
        time.sleep(SETTLE_SECONDS)
        memory = [_memory("master", process.pid)]
        memory += [_memory(f"worker {n}", pid) for n, pid in enumerate(child_pids(process.pid), 1)]
        return Start(seconds, memory)


def respawn(env: dict[str, str]) -> float:
    """The one worker killed with SIGKILL: seconds until its replacement, forked by the master
    (which has the application imported), answers ``/readyz``."""
    with _serving(env, workers=1) as (process, url, _):
        time.sleep(SETTLE_SECONDS)
        (worker,) = child_pids(process.pid)
        killed = time.perf_counter()
        os.kill(worker, signal.SIGKILL)
        wait_until_answering(url, process, ready=200, poll=POLL_SECONDS)
        return time.perf_counter() - killed


@contextmanager
def _serving(env: dict[str, str], workers: int) -> Iterator[tuple[subprocess.Popen, str, float]]:
    """``countersign serve`` until the block ends: its process, ``/readyz``'s URL, and the
    seconds from the command to its first ready answer."""
    port = free_port()
    command = [str(COUNTERSIGN), "serve", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]
    url = f"http://127.0.0.1:{port}/readyz"
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until_answering(url, process, ready=200, poll=POLL_SECONDS)
        yield process, url, time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=20)


def _memory(role: str, pid: int) -> Memory:
    return Memory(role, proc_kib(pid, "smaps_rollup"))


def _part_seconds(env: dict[str, str], setup: str, timed: str) -> float:
    """Median of five fresh interpreters: the seconds ``timed`` takes once ``setup`` has run."""
    code = "\n".join(
        [setup, "import time", "started = time.perf_counter()", timed, "print(time.perf_counter() - started)"]
    )
    runs = []
    for _ in range(5):
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, check=True)
        runs.append(float(done.stdout.split()[-1]))
    return statistics.median(runs)


def _section(starts: list[Start], parts: dict[str, float], respawns: list[float], workers: int) -> list[str]:
    seconds = [start.seconds for start in starts]
    ready = statistics.median(seconds)
    memory = starts[-1].memory
    return [
        "## Cold start and the memory of a server",
        "",
        f"`python -m bench.startup`: `countersign serve --workers {workers}` started {len(starts)} times on "
        "a migrated SQLite store, timed from the command to the first 200 on `/readyz` (polled every "
        "5 ms); memory from `/proc/<pid>/smaps_rollup` a second later. PSS splits each shared page "
        "among the processes that map it: the PSS column adds up to what the server occupies.",
        "",
        f"Ready in {_seconds(seconds)}; "
        f"target ≤ {TARGET_SECONDS:.0f} s: {'met' if ready <= TARGET_SECONDS else 'not met'}.",
        "",
        "| part of a start, alone (median of 5) | seconds |",
        "|---|---|",
        *(f"| {label} | {value:.2f} |" for label, value in parts.items()),
        "",
        "A worker killed with SIGKILL (`--workers 1`, so that no other worker answers): the master "
        f"forks its replacement, which answered `/readyz` after {_seconds(respawns)}.",
        "",
        "| process | RSS MiB | PSS MiB | private MiB | shared MiB |",
        "|---|---|---|---|---|",
        *(
            f"| {process.role} | {process.mib('Rss'):.0f} | {process.mib('Pss'):.0f} | "
            f"{process.mib('Private_Clean', 'Private_Dirty'):.0f} | "
            f"{process.mib('Shared_Clean', 'Shared_Dirty'):.0f} |"
            for process in memory
        ),
        f"| **all** | | **{sum(process.mib('Pss') for process in memory):.0f}** | | |",
        "",
    ]


def _seconds(values: list[float]) -> str:
    return f"{', '.join(f'{value:.2f}' for value in values)} s: median **{statistics.median(values):.2f} s**"


if __name__ == "__main__":
    main()
