"""Every AI card one patient was shown, from Countersign's own record: inputs, decision, decider,
and where the write-back of the AI output and of the decision stands (on the EHR, pending,
dead-lettered with the server's reason), so a CMIO sees any gap between our record and the EHR's.

Only issued card sets count (shadow output and suppressed calls were never shown). CDS Hooks
feedback names no user, so the decider of an EHR decision is the clinician the card was shown
to; a decision made on Countersign's review page names its reviewer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, select

from app.audit.outbox import CARD_SET, DEAD, DECISION, DELIVERED, OutboxMessage
from app.audit.outcome_summary import summarize
from app.audit.tables import CardDecision, CardSet, IssuedCard
from app.db import as_utc
from app.review.tables import ReviewDecision
from app.writeback.delivery import decision_key


@dataclass(frozen=True)
class WriteBack:
    """One record's way to the EHR. ``tag_prefix`` starts the delivery tag of every resource it
    writes there, so its Provenance can be found among the EHR's."""

    state: str  # delivered | pending | dead | not-configured
    tag_prefix: str
    attempts: int = 0
    reason: str | None = None


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
    output_write_back: WriteBack
    decision_write_back: WriteBack | None


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
    written = _write_backs(session, [c for _, c in rows], list(decisions.values()))
    return [
        _activity(card, card_set, decisions.get(card.uuid), reviewers, written) for card, card_set in rows
    ]


def _write_backs(
    session: Session, card_sets: list[CardSet], decisions: list[CardDecision]
) -> dict[tuple[str, int], OutboxMessage]:
    """The outbox message of each card set and decision, by (kind, record id)."""
    wanted = {(CARD_SET, c.id) for c in card_sets} | {(DECISION, d.id) for d in decisions}
    ids = [record_id for _, record_id in wanted]
    query = select(OutboxMessage).where(
        OutboxMessage.kind.in_([CARD_SET, DECISION]), OutboxMessage.record_id.in_(ids)
    )
    return {(m.kind, m.record_id): m for m in session.exec(query) if (m.kind, m.record_id) in wanted}


def _write_back(message: OutboxMessage | None, tag_prefix: str) -> WriteBack:
    if message is None:
        return WriteBack("not-configured", tag_prefix)
    reason = None
    if message.status == DEAD:
        issues = summarize(message.last_error)
        status = f"HTTP {message.last_status}: " if message.last_status else ""
        reason = status + ("; ".join(issue.line() for issue in issues) or "no reason given")
    state = message.status if message.status in (DELIVERED, DEAD) else "pending"
    return WriteBack(state, tag_prefix, message.attempts, reason)


def _activity(
    card: IssuedCard,
    card_set: CardSet,
    decision: CardDecision | None,
    reviewers: dict[str, str],
    written: dict[tuple[str, int], OutboxMessage],
) -> CardActivity:
    decision_write_back = None
    if decision is not None:
        prefix = f"{decision_key(decision)}."
        decision_write_back = _write_back(written.get((DECISION, decision.id)), prefix)
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
        output_write_back=_write_back(written.get((CARD_SET, card_set.id)), f"{card_set.uuid}."),
        decision_write_back=decision_write_back,
    )
