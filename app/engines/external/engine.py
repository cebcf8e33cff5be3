"""An engine whose model the hospital serves itself (KServe v2), declared in the model card, no code.

What leaves Countersign (the de-identification guarantee): one JSON body per hook call holding a
random request id (a fresh UUID, unrelated to the patient or the call) and one number per declared
input, each computed here from the prefetched resources. Tensors are numeric only (FP32, FP64,
INT32, INT64, BOOL: no BYTES, so no text), the FHIRPath that computes them may not turn text into a
number, dates leave only as whole years of age capped at 90 (HIPAA Safe Harbor) or as durations in
days, and no patient id, name, identifier, date or reference is ever in the body. Everything that
names the patient (the evidence, the suggested resource) is added back here, after the answer.

Unlike the built-in engines this one does I/O on the request path, within the card's deadline;
whenever it cannot give a score it raises ``ExternalModelFailed`` with a reason free of patient
data, and the backend records "no card, reason recorded".
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import requests

from app.engines.base import PatientData
from app.engines.external.client import Inference, KServeClient
from app.engines.external.failure import ExternalModelFailed
from app.engines.external.inputs import InputValue, read_inputs
from app.engines.external.spec import ExternalModel, SuggestionTemplate
from app.engines.external.template import fill_resource, placeholders_in, render_text
from cds_hooks.advice import (
    Advice,
    AdviceSet,
    CardSource,
    Evidence,
    Indicator,
    ProposedAction,
    ProposedSuggestion,
)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ExternalModelEngine:
    def __init__(
        self,
        spec: ExternalModel,
        source: CardSource,
        session: requests.Session | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.spec = spec
        self.source = source
        self.client = KServeClient(spec, session)
        self.clock = clock

    def suggest(self, data: PatientData) -> AdviceSet:
        """One card when the score reaches a threshold, none below; ``ExternalModelFailed`` otherwise.
        Inputs and the suggestion's references are checked before the call: a refusal sends nothing."""
        values = read_inputs(self.spec.inputs, data, self.clock())
        suggestion = self.spec.card.suggestion
        suggestions = (_suggestion(suggestion, data),) if suggestion else ()
        inference = self.client.infer([value.tensor for value in values])
        used = tuple(sorted({ref for value in values for ref in value.read}))
        indicator = self.spec.card.indicator_for(inference.score)
        if indicator is None:
            return AdviceSet((), used)
        return AdviceSet((self._advice(inference, indicator, values, suggestions),), used)

    def _advice(
        self,
        inference: Inference,
        indicator: Indicator,
        values: list[InputValue],
        suggestions: tuple[ProposedSuggestion, ...],
    ) -> Advice:
        card = self.spec.card
        fields = {"score": inference.score, "indicator": indicator}
        fields |= {value.tensor.name: value.tensor.value for value in values}
        return Advice(
            summary=render_text(card.summary, fields),
            indicator=indicator,
            rationale=render_text(card.detail, fields),
            confidence=inference.score if card.confidence == "score" else card.confidence,
            source=self.source,
            evidence=_merged([item for value in values for item in value.evidence]),
            suggestions=suggestions,
            rule_id=card.rule_id,
            citation=card.citation,
            extra={"externalModel": self._record(inference, values)},
        )

    def _record(self, inference: Inference, values: list[InputValue]) -> dict:
        """What was sent and received, for the card's record: the request id finds the server's log."""
        return {
            "model": self.spec.model_name,
            "version": self.spec.model_version,
            "requestId": inference.request_id,
            "score": inference.score,
            "inputs": {value.tensor.name: value.tensor.value for value in values},
            "defaulted": [value.tensor.name for value in values if value.defaulted],
        }


def _merged(evidence: list[Evidence]) -> tuple[Evidence, ...]:
    """One evidence item per resource, with everything read from it."""
    by_reference: dict[str, list[str]] = {}
    for item in evidence:
        by_reference.setdefault(item.reference, []).append(item.description)
    return tuple(Evidence(ref, "; ".join(descriptions)) for ref, descriptions in by_reference.items())


def _suggestion(template: SuggestionTemplate, data: PatientData) -> ProposedSuggestion:
    references = {"patient": f"Patient/{data.patient_id.removeprefix('Patient/')}"}
    if data.encounter_id:
        references["encounter"] = f"Encounter/{data.encounter_id.removeprefix('Encounter/')}"
    if not placeholders_in(template.resource) <= references.keys():
        raise ExternalModelFailed("no encounter in the hook context for the suggestion")
    resource = fill_resource(template.resource, references)
    action = ProposedAction("create", template.description or template.label, resource=resource)
    return ProposedSuggestion(template.label, (action,), recommended=template.recommended)
