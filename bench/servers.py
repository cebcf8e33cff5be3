"""Start the servers under test as gunicorn processes with identical settings."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Server:
    """A running gunicorn: its base URL, and its master's process id to find the workers by."""

    url: str
    pid: int

    def worker_rss_kib(self) -> list[int]:
        """Resident memory (``VmRSS``) of each worker process, in KiB."""
        return [memory_kib(pid, "VmRSS") or 0 for pid in child_pids(self.pid)]


def child_pids(pid: int) -> list[int]:
    """The process's children, as ``/proc`` lists them under each of its threads; none once it exited."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            children += [int(child) for child in task.read_text().split()]
        except FileNotFoundError:
            continue
    return children


def memory_kib(pid: int, field: str) -> int | None:
    """A memory figure of ``/proc/<pid>/status`` (``VmRSS``, ``VmHWM``…) in KiB; None once the
    process has exited (a zombie has no memory left to report)."""
    return proc_kib(pid, "status").get(field)


def proc_kib(pid: int, file: str) -> dict[str, int]:
    """Every figure in KiB of ``/proc/<pid>/<file>`` (``status``, ``smaps_rollup``); empty once the
    process has exited."""
    try:
        lines = Path(f"/proc/{pid}/{file}").read_text().splitlines()
    except FileNotFoundError:
        return {}
    figures = {}
    for line in lines:
        name, _, value = line.partition(":")
        if value.endswith(" kB"):
            figures[name] = int(value.split()[0])
    return figures


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def gunicorn(
    app_spec: str, port: int, env: dict[str, str], workers: int, threads: int, log: Path | None = None
) -> Iterator[Server]:
    """Run ``app_spec`` (module:factory()) on ``port`` and yield it once it answers;
    the server's own output (its JSON log lines) goes to ``log`` when given."""
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        app_spec,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--worker-class",
        "gthread",
        "--keep-alive",
        "5",
        "--log-level",
        "warning",
    ]
    with open(log or os.devnull, "ab") as output:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stderr=output if log else None)
        base_url = f"http://127.0.0.1:{port}"
        try:
            wait_until_answering(base_url + "/", process)
            yield Server(base_url, process.pid)
        finally:
            process.terminate()
            process.wait(timeout=20)


def wait_until_answering(
    url: str, process: subprocess.Popen, ready: int | None = None, poll: float = 0.2
) -> None:
    """Until ``url`` answers (with status ``ready``, when given); fails once ``process`` exits or
    30 s have passed."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            status = requests.get(url, timeout=1).status_code
            if ready is None or status == ready:
                return
        except requests.RequestException:
            pass
        time.sleep(poll)
    raise RuntimeError(f"{url} did not answer within 30 s")
