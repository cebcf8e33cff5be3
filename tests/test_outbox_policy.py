"""The rules behind outbox recovery, one at a time: Retry-After, backoff and window, what counts as a
server fault, the per-target breaker in the database, and what of a server's reason may be shown."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from sqlalchemy import Engine, select

from app.audit import outbox, target_breaker
from app.audit.outbox import OutboxMessage
from app.audit.outcome_summary import MASK, mask, summarize
from app.audit.target_breaker import BreakerPolicy
from app.db import create_db_engine, utcnow
from app.migrate import upgrade
from app.writeback.fhir_writer import DeliveryError, retry_after_seconds
from app.writeback.retry_policy import RetryPolicy

NOW = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
UP, DOWN = "http://up.example/fhir", "http://down.example/fhir"


@pytest.fixture
def database_url(both_databases: str) -> str:
    return both_databases


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    upgrade(database_url)
    engine = create_db_engine(database_url)
    yield engine
    engine.dispose()


def test_retry_after_is_read_as_seconds_or_an_http_date():
    assert retry_after_seconds("120") == 120
    assert retry_after_seconds(format_datetime(NOW + timedelta(seconds=90), usegmt=True), NOW) == 90
    assert retry_after_seconds(format_datetime(NOW - timedelta(seconds=5), usegmt=True), NOW) is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("-3") is None
    assert retry_after_seconds(None) is None


def test_backoff_doubles_with_jitter_is_capped_at_five_minutes_and_yields_to_retry_after_up_to_an_hour():
    policy = RetryPolicy(rng=random.Random(7))
    firsts = {policy.delay(0).total_seconds() for _ in range(50)}
    assert min(firsts) >= 0.5 and max(firsts) <= 1.0 and len(firsts) > 1, "jitter within the upper half"
    assert 4 <= policy.delay(3).total_seconds() <= 8
    assert 150 <= policy.delay(40).total_seconds() <= 300
    assert policy.delay(0, retry_after=30).total_seconds() == 30
    assert policy.delay(0, retry_after=86_400).total_seconds() == 3600


def test_the_retry_window_runs_from_the_first_failure():
    policy = RetryPolicy()
    assert not policy.expired(NOW, NOW + timedelta(hours=71, minutes=59))
    assert policy.expired(NOW, NOW + timedelta(hours=72))


@pytest.mark.parametrize(
    ("error", "unanswered", "server_fault"),
    [
        (DeliveryError("HTTP 503", permanent=False, status=503), True, True),
        (DeliveryError("HTTP 429", permanent=False, status=429), True, True),
        (DeliveryError("unreachable", permanent=False, unanswered=True), True, True),
        (DeliveryError("HTTP 500", permanent=False, status=500), False, True),
        (DeliveryError("HTTP 422", permanent=True, status=422), False, False),
        (DeliveryError("the accepted X is not on the server yet", permanent=False), False, False),
    ],
)
def test_server_faults_are_told_from_refusals_and_from_our_own_failures(error, unanswered, server_fault):
    assert (error.unanswered, error.server_fault) == (unanswered, server_fault)


def test_a_servers_reason_keeps_codes_and_paths_and_masks_what_could_be_patient_data():
    outcome = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "processing",
                "details": {"coding": [{"code": "HAPI-1094"}], "text": "Ellison, Margaret"},
                "diagnostics": (
                    "HAPI-0450: Invalid value 'Margaret' for Patient.name[0].given: Margaret Ellison "
                    "born 1951-03-04, MRN 88812345, lives in Leeds"
                ),
                "expression": ["Bundle.entry[2].resource.name[0].given"],
            },
            {"severity": "<script>", "code": "made-up", "details": {"coding": [{"code": "a b c"}]}},
        ],
    }
    first, second = summarize(outcome)
    assert (first.severity, first.code, first.details) == ("error", "processing", ("HAPI-1094",))
    assert first.expression == ("Bundle.entry[2].resource.name[0].given",)
    assert first.diagnostics == "… HAPI-0450: Invalid value … for Patient.name[0].given: … in …"
    for secret in ("Margaret", "Ellison", "1951", "88812345", "Leeds"):
        assert secret not in str(first.as_json())
    assert (second.severity, second.code, second.details) == (MASK, MASK, (MASK,))
    assert summarize({"resourceType": "Patient", "name": [{"family": "Ellison"}]}) == []


def test_a_surname_that_is_an_english_word_is_masked_inside_a_sentence():
    assert mask("Resource refused for Will Read and Long") == "Resource refused for … and …"
    assert mask("Read timed out") == "Read timed out"
    assert len(mask("word " * 500)) <= 160


def test_the_breaker_opens_after_n_faults_and_lets_one_probe_through_per_interval(engine):
    policy = BreakerPolicy(failures=3, probe_interval=0.05)
    assert [target_breaker.record_fault(engine, DOWN, policy, None) for _ in range(3)] == [False, False, True]
    with engine.connect() as connection:
        [state] = target_breaker.states(connection).values()
    assert (state.failures, state.state(utcnow())) == (3, "open")
    assert target_breaker.take_probe(engine, DOWN, policy.probe_interval) is None, "not before the interval"
    with engine.connect() as connection:
        assert target_breaker.states(connection)[DOWN].state(utcnow() + timedelta(seconds=1)) == "half-open"
    time.sleep(0.06)
    opened_at = target_breaker.take_probe(engine, DOWN, 60)
    assert opened_at == state.opened_at
    assert target_breaker.take_probe(engine, DOWN, 60) is None, "a second worker gets no probe"
    target_breaker.record_answer(engine, DOWN)
    with engine.connect() as connection:
        assert target_breaker.states(connection) == {}


def test_retry_after_opens_the_breaker_at_once_until_then(engine):
    assert target_breaker.record_fault(engine, DOWN, BreakerPolicy(failures=5), 120.0)
    with engine.connect() as connection:
        state = target_breaker.states(connection)[DOWN]
    assert timedelta(seconds=119) < state.probe_at - state.opened_at <= timedelta(seconds=121)


def test_an_open_target_is_not_claimed_and_its_messages_stay_untouched(engine):
    with engine.begin() as connection:
        for record_id, target in enumerate((DOWN, UP, DOWN, UP)):
            outbox.enqueue(connection, "card-set", record_id, target)
    target_breaker.record_fault(engine, DOWN, BreakerPolicy(failures=1), None)
    claimed = outbox.claim(engine, "worker-a", 10, timedelta(seconds=60))
    assert [message.target for message in claimed] == [UP, UP]
    probe = outbox.claim_probe(engine, "worker-b", DOWN, timedelta(seconds=60))
    assert (probe.id, probe.failing_since) == (1, None)
    with engine.connect() as connection:
        held = connection.execute(select(OutboxMessage).where(OutboxMessage.id == 3)).one()
    assert (held.attempts, held.lease_owner, held.first_failed_at) == (0, None, None)
