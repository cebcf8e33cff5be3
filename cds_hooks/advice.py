"""What a service hands the protocol layer to render as a card: protocol-neutral, no uuids yet.

Engines produce these; ``cds_hooks.cards`` turns them into CDS Hooks cards. Keeping the two
apart lets the governance core inspect and filter advice before anything is rendered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Indicator = Literal["info", "warning", "critical"]
ActionType = Literal["create", "update", "delete"]


@dataclass(frozen=True)
class Evidence:
    """One input the advice rests on: a FHIR reference and what was read from it."""

    reference: str
    description: str


@dataclass(frozen=True)
class ProposedAction:
    """A FHIR change the clinician may accept; never applied by the service itself."""

    type: ActionType
    description: str
    resource: dict | None = None
    resource_id: str | None = None


@dataclass(frozen=True)
class ProposedSuggestion:
    label: str
    actions: tuple[ProposedAction, ...] = ()
    recommended: bool = False


@dataclass(frozen=True)
class CardSource:
    """Who produced the advice: the model and version, and where its model card lives."""

    label: str
    url: str
    topic_code: str
    topic_display: str


@dataclass(frozen=True)
class Advice:
    """One card's worth of AI output, with the rationale and evidence a clinician needs."""

    summary: str
    indicator: Indicator
    rationale: str
    confidence: float
    source: CardSource
    evidence: tuple[Evidence, ...] = ()
    suggestions: tuple[ProposedSuggestion, ...] = ()
    rule_id: str = ""
    citation: str = ""
    extra: dict = field(default_factory=dict)
    held_for_review: tuple[ProposedSuggestion, ...] = ()
    """Proposals a clinician must review, edit and sign in the app; never sent to the EHR."""


@dataclass(frozen=True)
class AdviceSet:
    """A model's whole answer to one hook call: its advice and every input it actually read.

    ``disposition`` says what governance did with it: ``issued`` to the clinician, recorded only
    (``shadow``), or not produced at all because the model is ``paused`` or ``retired``.
    """

    advice: tuple[Advice, ...] = ()
    inputs_used: tuple[str, ...] = ()
    disposition: str = "issued"
