"""A closed-loop load generator: N threads, each on its own keep-alive connection."""

from __future__ import annotations

import http.client
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit


@dataclass(frozen=True)
class LoadResult:
    requests: int
    failures: int
    seconds: float
    latencies_ms: tuple[float, ...]
    #: The first answer that was not a 200: its status and the start of its body, to say why.
    first_failure: str = ""

    @property
    def throughput(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]

    @property
    def mean_ms(self) -> float:
        return statistics.fmean(self.latencies_ms) if self.latencies_ms else float("nan")


RequestMaker = Callable[[int], tuple[bytes, dict[str, str]]]


def run_load(url: str, make_request: RequestMaker, concurrency: int, total: int) -> LoadResult:
    """Send ``total`` POSTs to ``url`` from ``concurrency`` threads; request i is ``make_request(i)``."""
    parts = urlsplit(url)
    prepared = [make_request(i) for i in range(total)]
    latencies: list[float] = []
    failures = [0]
    first_failure: list[str] = []
    lock = threading.Lock()
    next_index = iter(range(total))

    def worker() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        own: list[float] = []
        own_failures = 0
        for index in next_index:
            body, headers = prepared[index]
            started = time.perf_counter()
            connection.request("POST", parts.path, body=body, headers=headers)
            response = connection.getresponse()
            answer = response.read()
            own.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                own_failures += 1
                said = f"{response.status} {answer[:500].decode(errors='replace')}"
                with lock:
                    first_failure[:] = first_failure or [said]
        connection.close()
        with lock:
            latencies.extend(own)
            failures[0] += own_failures

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return LoadResult(total, failures[0], elapsed, tuple(latencies), "".join(first_failure))
