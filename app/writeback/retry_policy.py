"""How long a write-back that failed for a passing reason is retried, and how far apart the tries are.

An outage is not a dead letter: a transient failure (no answer, 5xx, 408, 429, an accepted change
the EHR has not stored yet) is retried for a window of time, a maintenance weekend by default,
measured from the message's first failure. Only a message still failing when its window ends, or
one the server refuses outright (another 4xx), is dead-lettered. Tries back off exponentially,
capped, with jitter so that the messages of one outage do not all come back in the same second;
a server's ``Retry-After`` is honoured up to a ceiling, so a wrong header cannot stall delivery.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

DEFAULT_WINDOW = timedelta(hours=72)
MAX_DELAY = timedelta(minutes=5)
MAX_RETRY_AFTER = timedelta(hours=1)


@dataclass(frozen=True)
class RetryPolicy:
    base_delay: float = 1.0
    max_delay: float = MAX_DELAY.total_seconds()
    window: timedelta = DEFAULT_WINDOW
    max_retry_after: float = MAX_RETRY_AFTER.total_seconds()
    rng: random.Random = field(default_factory=random.Random, compare=False, repr=False)

    def delay(self, attempts: int, retry_after: float | None = None) -> timedelta:
        """Before try ``attempts + 1``: base·2^attempts capped, drawn from its upper half (jitter),
        and never sooner than the server asked (up to ``max_retry_after``)."""
        ceiling = min(self.base_delay * 2 ** min(attempts, 64), self.max_delay)
        seconds = self.rng.uniform(ceiling / 2, ceiling)
        return timedelta(seconds=max(seconds, self.honoured(retry_after)))

    def honoured(self, retry_after: float | None) -> float:
        """The part of a server's ``Retry-After`` that is obeyed: at most ``max_retry_after``."""
        return min(max(retry_after or 0.0, 0.0), self.max_retry_after)

    def expired(self, failing_since: datetime, now: datetime) -> bool:
        """Whether a message failing since ``failing_since`` has used up its window."""
        return now - failing_since >= self.window
