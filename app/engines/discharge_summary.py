"""Discharge-summary draft engine (encounter-discharge): a generative model when configured, else offline.

The offline extractive summariser is the default and the fallback: when the language model is
not configured, fails (timeout, error, malformed or ungrounded output, refusal) or its circuit
breaker is open, the clinician still gets a draft, and the card says which producer wrote it
and why. Either way the advice proposes one preliminary ``DocumentReference`` for the clinician
to review, edit and sign; every sentence cites the input resources it came from.

This engine does network I/O when a model is configured, unlike the pure engines; the call is
bounded by the endpoint's deadline and the breaker, so the hook's time budget holds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from app.engines.base import PatientData
from app.engines.discharge_draft import SummaryDraft, draft_markdown
from app.engines.discharge_extract import DischargeInputs, describe, extractive_draft, select_inputs
from app.engines.discharge_llm import LlmDrafter
from app.llm.breaker import BreakerState
from app.llm.client import LlmFailure
from cds_hooks.advice import Advice, AdviceSet, CardSource, Evidence, ProposedAction, ProposedSuggestion
from fhir_profiles.discharge_summary import draft_discharge_summary

logger = logging.getLogger(__name__)

RULE_ID = "discharge-summary-draft"
# Fixed per producer: the extractive draft only restates the record; a generative one may err.
CONFIDENCE_EXTRACTIVE = 0.9
CONFIDENCE_LANGUAGE_MODEL = 0.75
EXTRACTIVE_LABEL = "the offline extractive summariser"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class DischargeSummaryEngine:
    def __init__(
        self,
        source: CardSource,
        drafter: LlmDrafter | None = None,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.source = source
        self.drafter = drafter
        self.clock = clock

    @property
    def breaker_state(self) -> BreakerState | None:
        """The language model's circuit state, for metrics; None when no model is configured."""
        return self.drafter.breaker.state if self.drafter is not None else None

    def suggest(self, data: PatientData) -> AdviceSet:
        inputs = select_inputs(data)
        if inputs is None:
            return AdviceSet()
        draft, producer, extra = self._draft(data.patient_id, inputs)
        return AdviceSet((self._advice(data.patient_id, inputs, draft, producer, extra),), inputs.references)

    def _draft(self, patient_id: str, inputs: DischargeInputs) -> tuple[SummaryDraft, str, dict]:
        """The model's draft when it gives a grounded one; otherwise the extractive draft, saying why."""
        if self.drafter is None:
            return extractive_draft(inputs), EXTRACTIVE_LABEL, {"producer": "extractive"}
        try:
            result = self.drafter.draft(patient_id, inputs.resources())
        except LlmFailure as failure:
            logger.warning(
                "discharge summary: language model gave no draft; extractive used",
                extra={"cause": failure.kind},
            )
            producer = f"{EXTRACTIVE_LABEL}, because the language model gave no usable draft ({failure.kind})"
            extra = {"producer": "extractive", "fallback": failure.kind, "prompt": self.drafter.prompt.key}
            return extractive_draft(inputs), producer, extra
        extra = {
            "producer": "language-model",
            "prompt": self.drafter.prompt.key,
            "droppedSentences": result.dropped_sentences,
        }
        return result.draft, self.drafter.label, extra

    def _advice(
        self, patient_id: str, inputs: DischargeInputs, draft: SummaryDraft, producer: str, extra: dict
    ) -> Advice:
        by_reference = {f"{r.get('resourceType')}/{r.get('id')}": r for r in inputs.resources()}
        encounter_ref = f"Encounter/{inputs.encounter.get('id')}"
        document = draft_discharge_summary(patient_id, encounter_ref, _document_markdown(draft), self.clock())
        confidence = (
            CONFIDENCE_LANGUAGE_MODEL if extra["producer"] == "language-model" else CONFIDENCE_EXTRACTIVE
        )
        action = ProposedAction("create", "File the draft discharge summary (preliminary)", resource=document)
        return Advice(
            summary="Draft discharge summary ready for review",
            indicator="info",
            rationale=_rationale(draft, producer),
            confidence=confidence,
            source=self.source,
            evidence=tuple(Evidence(ref, describe(by_reference[ref])) for ref in draft.cited),
            suggestions=(ProposedSuggestion("Review and file the draft discharge summary", (action,), True),),
            rule_id=RULE_ID,
            extra=extra,
        )


def _rationale(draft: SummaryDraft, producer: str) -> str:
    return (
        "A draft discharge summary for this encounter. Review and edit every statement before it is "
        "signed; each one cites the record entries it came from.\n\n"
        f"**Written by:** {producer}.\n\n" + draft_markdown(draft, heading_level=4)
    )


def _document_markdown(draft: SummaryDraft) -> str:
    return (
        "# Discharge summary (draft)\n\n"
        "_AI-generated draft, preliminary: to be reviewed, edited and signed by a clinician._\n\n"
        + draft_markdown(draft)
    )
