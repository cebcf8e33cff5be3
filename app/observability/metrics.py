"""The service's Prometheus metrics, and one recorder per event the rest of the code reports.

Labels take values from closed sets only (service ids, hooks, indicators, reason codes), never
from request data, so a client cannot blow up the series count and no label can carry PHI.
Counters live in the process (or in ``PROMETHEUS_MULTIPROC_DIR`` under gunicorn; see
``exposition``); outbox depth and lag, and the ledger's unsealed backlog
(``countersign_ledger_oldest_unsealed_seconds``), are read from the database at scrape time instead.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

from cds_hooks.advice import AdviceSet
from cds_hooks.models import FeedbackItem
from cds_hooks.override_reasons import OVERRIDE_REASONS

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Guardrail events as the operations dashboard groups them.
SUPPRESSION_REASON = {
    "applicability": "applicability",
    "grounding": "grounding",
    "invalid-proposal": "invalid-proposal",
    "below-confidence-floor": "threshold",
    "recently-overridden": "alert-fatigue",
    "max-cards": "alert-fatigue",
}
OVERRIDE_CODES = frozenset(reason["code"] for reason in OVERRIDE_REASONS)
CIRCUIT_STATES = {"closed": 0, "half-open": 1, "open": 2}

HTTP_REQUESTS = Counter(
    "countersign_http_requests_total",
    "HTTP requests answered, by route template, method, status, and CDS service and hook.",
    ["route", "method", "status", "service", "hook"],
)
HTTP_LATENCY = Histogram(
    "countersign_http_request_duration_seconds",
    "Time from request start to response, by route template, method, and CDS service and hook.",
    ["route", "method", "service", "hook"],
    buckets=LATENCY_BUCKETS,
)
CARDS = Counter(
    "countersign_cards_total", "Cards returned to the EHR, by indicator.", ["service", "hook", "indicator"]
)
DISPOSITIONS = Counter(
    "countersign_hook_dispositions_total",
    "Hook calls by what governance did: issued, shadow, paused, retired, not-applicable.",
    ["service", "hook", "disposition"],
)
SUPPRESSIONS = Counter(
    "countersign_suppressions_total",
    "Advice kept from the clinician, by reason: paused, retired, shadow, applicability, threshold, "
    "grounding, invalid-proposal, alert-fatigue (one per piece of advice, or per call when the model "
    "did not run).",
    ["service", "hook", "reason"],
)
FEEDBACK = Counter(
    "countersign_feedback_total",
    "Feedback items accepted, by outcome and override reason code ('none' for accepted, "
    "'comment-only' for a reason given as free text only, 'other' for a code we did not offer).",
    ["service", "outcome", "override_reason"],
)
JWT_REJECTIONS = Counter(
    "countersign_jwt_rejections_total", "CDS client tokens refused, by cause.", ["cause"]
)
SHADOW_RUNS = Counter(
    "countersign_shadow_runs_total",
    "Shadow version runs after the response, by outcome: recorded, failed, or dropped (queue full).",
    ["service", "version", "outcome"],
)
ENGINE_LATENCY = Histogram(
    "countersign_engine_duration_seconds",
    "Time a service's engine took to produce advice.",
    ["service"],
    buckets=LATENCY_BUCKETS,
)
LLM_LATENCY = Histogram(
    "countersign_llm_request_duration_seconds",
    "Time of each call to a configured LLM endpoint, by endpoint name and outcome.",
    ["endpoint", "outcome"],
    buckets=LATENCY_BUCKETS,
)
CIRCUIT_BREAKER = Gauge(
    "countersign_circuit_breaker_state",
    "State of each circuit breaker: 0 closed, 1 half-open, 2 open.",
    ["breaker"],
    multiprocess_mode="livemax",
)
OUTBOX_SETTLED = Counter(
    "countersign_outbox_settled_total",
    "Outbox messages settled by this process's workers: delivered, retry (will be tried again), dead.",
    ["outcome"],
)
RATE_LIMITED = Counter(
    "countersign_rate_limited_total", "Requests refused with 429 by the per-client rate limit.", ["route"]
)


def record_disposition(service: str, hook: str, advice: AdviceSet, rendered_cards: int) -> None:
    """What governance decided for one hook call, called once the card set is recorded."""
    DISPOSITIONS.labels(service, hook, advice.disposition).inc()
    if advice.disposition in ("paused", "retired"):
        SUPPRESSIONS.labels(service, hook, advice.disposition).inc()
    if advice.disposition == "shadow" and rendered_cards:
        SUPPRESSIONS.labels(service, hook, "shadow").inc(rendered_cards)
    if advice.disposition == "shadow":
        return  # what a shadow's guardrails removed was never going to reach anyone
    for event in getattr(advice, "guardrail_events", ()):
        guardrail = str(event.get("guardrail", "unknown"))
        SUPPRESSIONS.labels(service, hook, SUPPRESSION_REASON.get(guardrail, guardrail)).inc()


def record_cards(service: str, hook: str, cards: Iterable[dict]) -> None:
    for card in cards:
        CARDS.labels(service, hook, card.get("indicator", "info")).inc()


def record_feedback(service: str, items: Iterable[FeedbackItem]) -> None:
    for item in items:
        FEEDBACK.labels(service, item.outcome, _override_label(item)).inc()


def _override_label(item: FeedbackItem) -> str:
    reason = item.overrideReason
    if reason is None:
        return "none"
    if reason.reason is None:
        return "comment-only"
    return reason.reason.code if reason.reason.code in OVERRIDE_CODES else "other"


def record_llm_call(endpoint: str, seconds: float, outcome: str) -> None:
    """For LLM adapters: one call to a private model endpoint (``outcome``: ok, error, timeout)."""
    LLM_LATENCY.labels(endpoint, outcome).observe(seconds)


def record_circuit_state(breaker: str, state: str) -> None:
    """For circuit breakers: their state on every transition (closed, half-open, open)."""
    CIRCUIT_BREAKER.labels(breaker).set(CIRCUIT_STATES[state])
