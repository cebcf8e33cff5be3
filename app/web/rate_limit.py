"""Per-client rate limit on the CDS Hooks endpoints: a token bucket per client address, 429 + Retry-After.

It runs before the client's JWT is verified, so a flood of bad tokens cannot make the service
spend its CPU on signatures and its database on ``jti`` rows. Buckets live in each worker
process: the limit protects the service from a runaway client, it is not a billing quota
(with W workers a client may get up to W times the rate; see docs/DECISIONS.md).
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field

from flask import Flask, Response, current_app, request

from app.observability import metrics
from app.settings import Settings
from cds_hooks.blueprint import bp as cds_blueprint
from cds_hooks.errors import outcome_response

EXTENSION_KEY = "rate_limit"
MAX_TRACKED_CLIENTS = 10_000


@dataclass
class TokenBuckets:
    """``burst`` requests at once, refilled at ``per_second``; one bucket per client key."""

    per_second: float
    burst: float
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self, key: str, now: float | None = None) -> float:
        """Spend one token: 0.0 if allowed, else the seconds until a token is available."""
        now = time.monotonic() if now is None else now
        with self._lock:
            tokens = self._level(key, now)
            allowed = tokens >= 1
            self._buckets[key] = (tokens - 1 if allowed else tokens, now)
            if len(self._buckets) > MAX_TRACKED_CLIENTS:
                self._forget_full(now)
        return 0.0 if allowed else (1 - tokens) / self.per_second

    def _level(self, key: str, now: float) -> float:
        tokens, updated = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - updated) * self.per_second)

    def _forget_full(self, now: float) -> None:
        """A full bucket is the same as no bucket: drop those to bound memory."""
        for key in [k for k in self._buckets if self._level(k, now) >= self.burst]:
            del self._buckets[key]


def init_app(app: Flask, settings: Settings) -> None:
    if settings.rate_limit_per_minute <= 0:
        return
    app.extensions[EXTENSION_KEY] = TokenBuckets(
        settings.rate_limit_per_minute / 60, max(settings.rate_limit_burst, 1)
    )
    app.before_request(_limit_hook_calls)


def _limit_hook_calls() -> Response | None:
    if request.method == "OPTIONS" or not _is_cds_path():
        return None
    wait = current_app.extensions[EXTENSION_KEY].take(request.remote_addr or "unknown")
    if not wait:
        return None
    retry_after = max(math.ceil(wait), 1)
    route = request.url_rule.rule if request.url_rule is not None else "unmatched"
    metrics.RATE_LIMITED.labels(route).inc()
    response = outcome_response(429, f"Too many requests from this client; retry after {retry_after} s")
    response.headers["Retry-After"] = str(retry_after)
    return response


def _is_cds_path() -> bool:
    prefix = cds_blueprint.url_prefix or ""
    return request.path == prefix or request.path.startswith(prefix + "/")
