"""Every AI card one patient was shown, from Countersign's own record: inputs, decision, decider.

Only issued card sets count (shadow output and suppressed calls were never shown). CDS Hooks
feedback names no user, so the decider of an EHR decision is the clinician the card was shown
to; a decision made on Countersign's review page names its reviewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from app.audit.tables import CardDecision, CardSet, IssuedCard
from app.db import as_utc
from app.review.tables import ReviewDecision


@dataclass(frozen=True)
class CardActivity:
    uuid: str
    shown_at: datetime
    model: str
    hook: str
    indicator: str
    summary: str
    confidence: float
    inputs: tuple[str, ...]
    held_for_review: bool
    outcome: str | None
    reason: str | None
    decided_at: datetime | None
    decided_by: str | None


def patient_cards(session: Session, patient_id: str) -> list[CardActivity]:
    """Newest first."""
    rows = session.exec(
        select(IssuedCard, CardSet)
        .join(CardSet, CardSet.id == IssuedCard.card_set_id)
        .where(CardSet.patient_id == patient_id, CardSet.disposition == "issued")
        .order_by(CardSet.created_at.desc(), IssuedCard.uuid)
    ).all()
    uuids = [card.uuid for card, _ in rows]
    decisions = {
        d.card_uuid: d
        for d in session.exec(
            select(CardDecision).where(CardDecision.card_uuid.in_(uuids)).order_by(CardDecision.id)
        )
    }
    reviewers = {
        r.card_uuid: r.reviewer
        for r in session.exec(select(ReviewDecision).where(ReviewDecision.card_uuid.in_(uuids)))
    }
    return [_activity(card, card_set, decisions.get(card.uuid), reviewers) for card, card_set in rows]


def _activity(
    card: IssuedCard, card_set: CardSet, decision: CardDecision | None, reviewers: dict[str, str]
) -> CardActivity:
    return CardActivity(
        uuid=card.uuid,
        shown_at=as_utc(card_set.created_at),
        model=f"{card_set.model_id}-{card_set.model_version}",
        hook=card_set.hook,
        indicator=card.indicator,
        summary=card.card.get("summary", ""),
        confidence=card.confidence,
        inputs=tuple(sorted(set(card.evidence_refs) or set(card_set.input_refs))),
        held_for_review=bool(card.held_for_review),
        outcome=decision.outcome if decision else None,
        reason=(decision.override_display or decision.override_code) if decision else None,
        decided_at=decision.decided_at(card_set.created_at) if decision else None,
        decided_by=(reviewers.get(card.uuid) or card_set.user_id) if decision else None,
    )
