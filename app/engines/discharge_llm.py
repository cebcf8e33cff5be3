"""The language-model drafter: de-identify, ask the private endpoint, check, re-identify.

Nothing identifiable leaves: the model sees only de-identified resources (``app.privacy.deidentify``).
Its answer is re-identified inside Countersign, and a sentence survives only if every source it
cites maps back to one of the input resources; an answer with nothing grounded left is a failure.
The circuit breaker stops calling an endpoint that keeps failing, so a dead endpoint costs a
hook call nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from app.engines.discharge_draft import Section, Sentence, SummaryDraft
from app.llm.breaker import CircuitBreaker
from app.llm.client import ChatClient, Endpoint, LlmFailure
from app.llm.prompt_card import PromptCard
from app.observability.metrics import record_circuit_state, record_llm_call
from app.privacy.deidentify import Deidentifier, Reidentifier
from app.settings import Settings

SCHEMA_NAME = "discharge_summary_draft"


@dataclass(frozen=True)
class LlmDraft:
    draft: SummaryDraft
    dropped_sentences: int


@dataclass(frozen=True)
class LlmDrafter:
    client: ChatClient
    breaker: CircuitBreaker
    deidentifier: Deidentifier
    prompt: PromptCard

    @classmethod
    def from_settings(cls, settings: Settings, prompt: PromptCard) -> LlmDrafter | None:
        """None when no endpoint is configured: the offline summariser is then the only producer."""
        if not settings.llm_url:
            return None
        endpoint = Endpoint(
            settings.llm_url,
            settings.llm_model,
            settings.llm_api_key.get_secret_value(),
            settings.llm_deadline_seconds,
        )
        return cls(
            ChatClient(endpoint),
            CircuitBreaker(settings.llm_breaker_failures, settings.llm_breaker_reset_seconds),
            Deidentifier(settings.deidentify_secret.get_secret_value().encode()),
            prompt,
        )

    @property
    def label(self) -> str:
        return f"language model {self.client.endpoint.model} with prompt {self.prompt.key}"

    def draft(self, patient_id: str, resources: list[dict]) -> LlmDraft:
        """A grounded draft, or ``LlmFailure`` (``circuit-open`` when the breaker refuses)."""
        if not self.breaker.allow():
            raise LlmFailure("circuit-open")
        cleaned, reidentifier = self.deidentifier.deidentify(patient_id, resources)
        messages = self.prompt.messages(json.dumps(cleaned, separators=(",", ":"), ensure_ascii=False))
        started = time.monotonic()
        try:
            answer = self.client.complete(messages, SummaryDraft, SCHEMA_NAME)
        except LlmFailure as failure:
            self.breaker.record_failure()
            self._measure(started, failure.kind)
            raise
        self.breaker.record_success()
        self._measure(started, "ok")
        inputs = {f"{r.get('resourceType')}/{r.get('id')}" for r in resources}
        return _grounded(answer, reidentifier, inputs)

    def _measure(self, started: float, outcome: str) -> None:
        endpoint = self.client.endpoint.model
        record_llm_call(endpoint, time.monotonic() - started, outcome)
        record_circuit_state(f"llm:{endpoint}", self.breaker.state)


def _grounded(answer: SummaryDraft, reidentifier: Reidentifier, inputs: set[str]) -> LlmDraft:
    sections, dropped = [], 0
    for section in answer.sections:
        kept = [s for s in (_restored(s, reidentifier, inputs) for s in section.sentences) if s is not None]
        dropped += len(section.sentences) - len(kept)
        if kept:
            sections.append(Section(title=reidentifier.restore(section.title), sentences=kept))
    if not sections:
        raise LlmFailure("ungrounded")
    return LlmDraft(SummaryDraft(sections=sections), dropped)


def _restored(sentence: Sentence, reidentifier: Reidentifier, inputs: set[str]) -> Sentence | None:
    """The sentence re-identified, or None if any source it cites is not an input resource."""
    sources = [reidentifier.original_reference(source) for source in sentence.sources]
    if any(source not in inputs for source in sources):
        return None
    return Sentence(text=reidentifier.restore(sentence.text), sources=list(dict.fromkeys(sources)))
