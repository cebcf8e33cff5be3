"""Writing the durable record: a card set with its cards, and clinicians' decisions on them."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, bindparam, func, insert
from sqlmodel import Session, select

from app.audit.tables import CardDecision, CardSet, IssuedCard
from app.db import as_utc, utcnow
from app.governance.cache import signal_change
from app.governance.model_card import ModelCard
from app.serving.runs import ServedAdvice
from cds_hooks.backend import HookCall, UnknownCards, UnknownSuggestions
from cds_hooks.cards import RenderedCard
from cds_hooks.models import FeedbackItem

# Statements built once: the hook path runs them on every call.
INSERT_CARD_SET = insert(CardSet).returning(CardSet.id)
INSERT_ISSUED_CARDS = insert(IssuedCard)
RECENT_OVERRIDES = (
    select(CardDecision.card_uuid, func.max(CardDecision.received_at))
    .where(CardDecision.received_at >= bindparam("since"), CardDecision.outcome == "overridden")
    .group_by(CardDecision.card_uuid)
)
OVERRIDDEN_RULES = (
    select(IssuedCard.uuid, IssuedCard.rule_id)
    .join(CardSet, CardSet.id == IssuedCard.card_set_id)
    .where(
        IssuedCard.uuid.in_(bindparam("uuids", expanding=True)),
        CardSet.service_id == bindparam("service_id"),
        CardSet.patient_id == bindparam("patient_id"),
        CardSet.user_id == bindparam("user_id"),
    )
)


@dataclass(frozen=True)
class CardSetRecord:
    """The rows of one response, built before the write transaction so that it only inserts."""

    card_set: dict
    cards: list[dict]

    @classmethod
    def of(
        cls, call: HookCall, model: ModelCard, advice: ServedAdvice, cards: list[RenderedCard]
    ) -> CardSetRecord:
        card_set = {
            "uuid": str(uuid.uuid4()),
            "hook_instance": call.request.hookInstance,
            "service_id": call.service_id,
            "hook": call.request.hook,
            "model_id": model.id,
            "model_version": model.version,
            "disposition": advice.disposition,
            "patient_id": call.context.patient_id,
            "encounter_id": call.context.encounter_id,
            "user_id": call.context.user_id,
            "fhir_server": call.request.fhir_server,
            "input_refs": list(advice.inputs_used),
            "fetched_prefetch_keys": list(call.prefetch.fetched),
            "latency_ms": advice.latency_ms,
            "failure": advice.failure,
            "created_at": utcnow(),
        }
        return cls(card_set, [_issued_card(call.service_id, rendered) for rendered in cards])

    def insert(self, connection: Connection) -> int:
        """On the caller's transaction, with SQLAlchemy Core rather than the ORM (every hook call
        runs it, and the unit of work would cost more than the hook's own logic); returns the id."""
        card_set_id = connection.execute(INSERT_CARD_SET, self.card_set).scalar_one()
        if self.cards:
            rows = [row | {"card_set_id": card_set_id} for row in self.cards]
            connection.execute(INSERT_ISSUED_CARDS, rows)
        return card_set_id


def _issued_card(service_id: str, rendered: RenderedCard) -> dict:
    return {
        "uuid": rendered.uuid,
        "service_id": service_id,
        "indicator": rendered.advice.indicator,
        "confidence": rendered.advice.confidence,
        "rule_id": rendered.advice.rule_id,
        "suggestion_uuids": list(rendered.suggestion_uuids),
        "evidence_refs": [item.reference for item in rendered.advice.evidence],
        "card": rendered.card,
        "held_for_review": list(rendered.held_for_review),
    }


def add_decisions(
    session: Session, service_id: str, items: list[FeedbackItem]
) -> list[tuple[CardDecision, CardSet]]:
    """Stage the decisions not stored before, with the card set each belongs to.

    All-or-nothing: if any card is unknown to the service, nothing is staged.
    """
    cards = _cards_of_service(session, service_id, {item.card for item in items})
    unknown = sorted({item.card for item in items} - cards.keys())
    if unknown:
        raise UnknownCards(unknown)
    decisions = {fingerprint(item): _decision(item, cards[item.card]) for item in items}
    stored = set(
        session.exec(select(CardDecision.fingerprint).where(CardDecision.fingerprint.in_(decisions)))
    )
    new = [decision for key, decision in decisions.items() if key not in stored]
    session.add_all(new)
    if any(decision.outcome == "overridden" for decision in new):
        signal_change(session.connection())
    card_sets = {card.uuid: session.get(CardSet, card.card_set_id) for card in cards.values()}
    return [(decision, card_sets[decision.card_uuid]) for decision in new]


def _cards_of_service(session: Session, service_id: str, uuids: set[str]) -> dict[str, IssuedCard]:
    query = select(IssuedCard).where(IssuedCard.uuid.in_(uuids), IssuedCard.service_id == service_id)
    return {card.uuid: card for card in session.exec(query)}


def fingerprint(item: FeedbackItem) -> str:
    """Identity of a feedback item: the same item resent by a client maps to the same row."""
    canonical = json.dumps(item.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _decision(item: FeedbackItem, card: IssuedCard) -> CardDecision:
    accepted = [suggestion.id for suggestion in item.acceptedSuggestions or ()]
    foreign = sorted(set(accepted) - set(card.suggestion_uuids))
    if foreign:
        raise UnknownSuggestions(f"suggestions {', '.join(foreign)} are not on card {card.uuid}")
    reason = item.overrideReason.reason if item.overrideReason else None
    return CardDecision(
        fingerprint=fingerprint(item),
        card_uuid=card.uuid,
        outcome=item.outcome,
        accepted_suggestions=accepted,
        override_system=reason.system if reason else None,
        override_code=reason.code if reason else None,
        override_display=reason.display if reason else None,
        user_comment=item.overrideReason.userComment if item.overrideReason else None,
        outcome_timestamp=item.outcomeTimestamp,
    )


def card_set_entry(call: HookCall, model: ModelCard, advice: ServedAdvice, cards: list[RenderedCard]) -> dict:
    """What the ledger keeps of a response: who asked, which model answered, what it said."""
    return {
        "hookInstance": call.request.hookInstance,
        "service": call.service_id,
        "model": f"{model.id}@{model.version}",
        "disposition": advice.disposition,
        "guardrails": list(advice.guardrail_events),
        "patient": call.context.patient_id,
        "user": call.context.user_id,
        "inputs": list(advice.inputs_used),
        "cards": [
            {
                "uuid": rendered.uuid,
                "indicator": rendered.advice.indicator,
                "confidence": rendered.advice.confidence,
                "rule": rendered.advice.rule_id,
                "suggestions": list(rendered.suggestion_uuids),
            }
            for rendered in cards
        ],
    }


def decision_entry(decision: CardDecision) -> dict:
    return {
        "card": decision.card_uuid,
        "outcome": decision.outcome,
        "acceptedSuggestions": decision.accepted_suggestions,
        "overrideReason": decision.override_code,
        "outcomeTimestamp": decision.outcome_timestamp.isoformat(),
        "fingerprint": decision.fingerprint,
    }


def recent_override_rules(
    connection: Connection, service_id: str, patient_id: str, user_id: str, since: datetime
) -> dict[str, datetime]:
    """Rules whose cards this clinician overrode for this patient since ``since`` (alert fatigue),
    each with its latest override, so that a cached answer stays exact as the window moves on.

    Starts from the few recent overrides (indexed by time), never from the patient's whole history,
    so the cost on the hook path does not grow with the number of cards a patient has had.
    """
    recent = dict(connection.execute(RECENT_OVERRIDES, {"since": since}).all())
    if not recent:
        return {}
    parameters = {"uuids": [*recent], "service_id": service_id, "patient_id": patient_id, "user_id": user_id}
    latest: dict[str, datetime] = {}
    for card_uuid, rule in connection.execute(OVERRIDDEN_RULES, parameters):
        overridden_at = as_utc(recent[card_uuid])
        latest[rule] = max(overridden_at, latest.get(rule, overridden_at))
    return latest
