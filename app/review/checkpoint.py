"""Signing or rejecting a held high-risk draft: the only way its content reaches the EHR.

The decision goes through the same feedback path as the EHR's (``accepted`` with the held
suggestion's uuid, or ``overridden`` with a reason), so the dashboard counts it like any other.
Signing also keeps the clinician's text and enqueues one write-back (DocumentReference, its
AI-Provenance and an AuditEvent); rejecting writes nothing to the EHR. Decision, review row,
ledger entries and outbox message commit together or not at all.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from app.audit import ledger, outbox
from app.audit.tables import CardDecision, CardSet, IssuedCard
from app.db import transaction, utcnow
from app.review.tables import ReviewDecision
from app.serving.card_records import add_decisions, decision_entry
from cds_hooks.models import FeedbackItem

MAX_TEXT = 20000
REJECTION_SYSTEM = "https://countersign.health/fhir/CodeSystem/review-rejection-reason"
REJECTION_REASONS = {
    "inaccurate": "States something the record does not support",
    "incomplete": "Leaves out something the summary needs",
    "not-needed": "No discharge summary is needed from this draft",
    "other": "Other reason (see comment)",
}


class ReviewRefused(ValueError):
    """The review cannot be recorded; ``status`` is the HTTP status the page answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class HeldDraft:
    """A held suggestion with what the review page shows beside it."""

    card_uuid: str
    service_id: str
    model: str
    patient_id: str
    summary: str
    suggestion_uuid: str
    document: dict
    text: str
    evidence_refs: tuple[str, ...]
    fhir_server: str | None
    decision: ReviewDecision | None
    override_code: str | None


def held_draft(session: Session, card_uuid: str) -> HeldDraft | None:
    """The card's first held suggestion that creates a document, or None when nothing is held."""
    row = session.exec(
        select(IssuedCard, CardSet)
        .join(CardSet, CardSet.id == IssuedCard.card_set_id)
        .where(IssuedCard.uuid == card_uuid)
    ).first()
    if row is None:
        return None
    card, card_set = row
    held = [s for s in card.held_for_review if _document_action(s) is not None]
    if not held:
        return None
    document = _document_action(held[0])["resource"]
    review = session.exec(select(ReviewDecision).where(ReviewDecision.card_uuid == card_uuid)).first()
    decision = _latest_decision(session, card_uuid)
    return HeldDraft(
        card_uuid=card_uuid,
        service_id=card.service_id,
        model=f"{card_set.model_id}-{card_set.model_version}",
        patient_id=card_set.patient_id,
        summary=card.card.get("summary", ""),
        suggestion_uuid=held[0]["uuid"],
        document=document,
        text=document_text(document),
        evidence_refs=tuple(card.evidence_refs),
        fhir_server=card_set.fhir_server,
        decision=review,
        override_code=decision.override_code if decision else None,
    )


def document_text(document: dict) -> str:
    data = document.get("content", [{}])[0].get("attachment", {}).get("data", "")
    return base64.b64decode(data).decode() if data else ""


def sign(
    engine: Engine,
    card_uuid: str,
    text: str,
    *,
    reviewer: str,
    writeback_target: Callable[[str | None], str | None],
) -> ReviewDecision:
    """Accept the held draft as edited by ``reviewer``; the write-back is enqueued, not sent."""
    cleaned = text.replace("\r\n", "\n").strip()
    if not cleaned or len(cleaned) > MAX_TEXT:
        raise ReviewRefused(400, f"text: required, at most {MAX_TEXT} characters")
    with transaction(engine) as session:
        draft = _undecided(session, card_uuid)
        feedback = FeedbackItem(
            card=card_uuid,
            outcome="accepted",
            acceptedSuggestions=[{"id": draft.suggestion_uuid}],
            outcomeTimestamp=_now(),
        )
        review = _record(session, draft, feedback, reviewer)
        review.text = cleaned
        review.text_sha256 = hashlib.sha256(cleaned.encode()).hexdigest()
        review.edited = cleaned != draft.text.strip()
        session.flush()
        ledger.append(
            session.connection(), "review-signed", _review_entry(review), about=(ReviewDecision, review.id)
        )
        target = writeback_target(draft.fhir_server)
        if target is not None:
            outbox.enqueue(session.connection(), outbox.SIGNED_REVIEW, review.id, target)
    return review


def reject(engine: Engine, card_uuid: str, reason: str, comment: str, *, reviewer: str) -> ReviewDecision:
    """Override the held draft with a reason; nothing is written to the EHR."""
    if reason not in REJECTION_REASONS:
        raise ReviewRefused(400, f"reason: one of {', '.join(REJECTION_REASONS)}")
    comment = comment.strip()
    if len(comment) > 2000 or (reason == "other" and not comment):
        raise ReviewRefused(400, "comment: required for 'other', at most 2000 characters")
    with transaction(engine) as session:
        draft = _undecided(session, card_uuid)
        coding = {"system": REJECTION_SYSTEM, "code": reason, "display": REJECTION_REASONS[reason]}
        feedback = FeedbackItem(
            card=card_uuid,
            outcome="overridden",
            overrideReason={"reason": coding, "userComment": comment or None},
            outcomeTimestamp=_now(),
        )
        review = _record(session, draft, feedback, reviewer)
        session.flush()
        ledger.append(
            session.connection(), "review-rejected", _review_entry(review), about=(ReviewDecision, review.id)
        )
    return review


def _undecided(session: Session, card_uuid: str) -> HeldDraft:
    draft = held_draft(session, card_uuid)
    if draft is None:
        raise ReviewRefused(404, "this card holds nothing for review")
    if draft.decision is not None or _latest_decision(session, card_uuid) is not None:
        raise ReviewRefused(409, "this card has already been decided")
    return draft


def _record(session: Session, draft: HeldDraft, feedback: FeedbackItem, reviewer: str) -> ReviewDecision:
    [(decision, card_set)] = add_decisions(session, draft.service_id, [feedback])
    session.flush()
    ledger.append(
        session.connection(), "decision-recorded", decision_entry(decision), about=(CardDecision, decision.id)
    )
    review = ReviewDecision(
        card_uuid=draft.card_uuid,
        decision_id=decision.id,
        outcome=decision.outcome,
        suggestion_uuid=draft.suggestion_uuid,
        reviewer=reviewer,
        decided_at=decision.decided_at(card_set.created_at),
    )
    session.add(review)
    try:
        session.flush()
    except IntegrityError:
        raise ReviewRefused(409, "this card has already been decided") from None
    return review


def _latest_decision(session: Session, card_uuid: str) -> CardDecision | None:
    query = select(CardDecision).where(CardDecision.card_uuid == card_uuid).order_by(CardDecision.id.desc())
    return session.exec(query).first()


def _document_action(suggestion: dict) -> dict | None:
    for action in suggestion.get("actions", []):
        resource = action.get("resource") or {}
        if action.get("type") == "create" and resource.get("resourceType") == "DocumentReference":
            return action
    return None


def _review_entry(review: ReviewDecision) -> dict:
    """References, hashes and times only: the signed text stays in its table."""
    return {
        "card": review.card_uuid,
        "suggestion": review.suggestion_uuid,
        "outcome": review.outcome,
        "reviewer": review.reviewer,
        "decision": review.decision_id,
        "textSha256": review.text_sha256,
        "edited": review.edited,
        "decidedAt": review.decided_at.isoformat(),
    }


def _now() -> str:
    """The decision time in the RFC 3339 form the feedback model accepts."""
    return utcnow().isoformat()
