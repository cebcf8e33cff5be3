"""The chat-completions client and its circuit breaker, against a real local HTTP server."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import ValidationError

from app.engines.discharge_draft import SummaryDraft
from app.llm.breaker import CircuitBreaker
from app.llm.client import ChatClient, Endpoint, LlmFailure
from app.settings import Settings
from tests.fake_llm_server import FakeLlmServer

ANSWER = {
    "sections": [
        {"title": "Diagnoses", "sentences": [{"text": "Pneumonia.", "sources": ["Condition/ref-1"]}]}
    ]
}
MESSAGES = [{"role": "user", "content": "Draft it."}]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server():
    with FakeLlmServer(lambda _: ANSWER) as fake:
        yield fake


def client(server: FakeLlmServer, deadline: float = 0.5) -> ChatClient:
    return ChatClient(Endpoint(server.base_url, "test-model", "k", deadline))


def test_a_valid_answer_is_returned_as_the_schema(server):
    draft = client(server).complete(MESSAGES, SummaryDraft, "draft")
    assert draft.sections[0].sentences[0].sources == ["Condition/ref-1"]
    assert server.requests[0]["messages"] == MESSAGES
    assert server.requests[0]["temperature"] == 0


@pytest.mark.parametrize("mode", ["slow", "hanging"])
def test_the_deadline_bounds_a_slow_or_hanging_endpoint(server, mode):
    server.mode = mode
    started = time.monotonic()
    with pytest.raises(LlmFailure) as failure:
        client(server, deadline=0.3).complete(MESSAGES, SummaryDraft, "draft")
    assert failure.value.kind == "timeout"
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(
    ("mode", "kind"),
    [
        ("malformed", "malformed"),
        ("schema-violation", "schema"),
        ("refusal", "refusal"),
        ("error-500", "http-error"),
    ],
)
def test_each_bad_answer_is_a_failure_of_its_kind(server, mode, kind):
    server.mode = mode
    with pytest.raises(LlmFailure) as failure:
        client(server).complete(MESSAGES, SummaryDraft, "draft")
    assert failure.value.kind == kind


def test_an_endpoint_nobody_listens_on_is_unavailable(server):
    endpoint = Endpoint("http://127.0.0.1:9/v1", "m", deadline_seconds=0.5)
    with pytest.raises(LlmFailure) as failure:
        ChatClient(endpoint).complete(MESSAGES, SummaryDraft, "draft")
    assert failure.value.kind in ("unavailable", "timeout")


def test_the_breaker_opens_after_the_threshold_and_lets_one_trial_through_when_half_open():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=3, reset_after=10, clock=clock)
    for _ in range(2):
        assert breaker.allow()
        breaker.record_failure()
    assert breaker.state == "closed"
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    clock.now = 10
    assert breaker.state == "half-open"
    assert breaker.allow() and not breaker.allow()  # one trial only
    breaker.record_failure()
    assert breaker.state == "open"  # a failed trial reopens at once
    clock.now = 20
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()


def test_a_success_resets_the_count_of_consecutive_failures():
    breaker = CircuitBreaker(failure_threshold=2, reset_after=10, clock=FakeClock())
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == "closed"


def test_concurrent_callers_in_half_open_state_get_exactly_one_trial():
    clock = FakeClock()
    breaker = CircuitBreaker(failure_threshold=1, reset_after=1, clock=clock)
    breaker.record_failure()
    clock.now = 1
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(breaker.allow())) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1


def test_a_model_endpoint_without_a_de_identification_secret_does_not_start():
    with pytest.raises(ValidationError, match="COUNTERSIGN_DEIDENTIFY_SECRET"):
        Settings(llm_url="http://gpu:8000/v1", llm_model="m")
    with pytest.raises(ValidationError, match="COUNTERSIGN_LLM_MODEL"):
        Settings(llm_url="http://gpu:8000/v1", deidentify_secret="s" * 32)
    assert Settings(llm_url="http://gpu:8000/v1", llm_model="m", deidentify_secret="s" * 32).llm_model == "m"
