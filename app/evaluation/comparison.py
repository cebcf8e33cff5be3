"""A shadow version against the active one, on the live calls both answered.

Each hook call the active version answers on the request path, every version in shadow answers
after it, off the path (``app.serving.shadow``): their card sets share the call's ``hook_instance``
and ``service_id``. Pairing them on those gives, over the most recent ``limit`` calls:

- agreement: the share of calls where both raised the same set of rules;
- the calls where they differ, with the rules only one of them raised;
- each version's confidence distribution and engine latency;
- what clinicians did with the active version's cards that the shadow would not have raised
  (accepted, overridden, undecided): evidence for or against the shadow dropping a rule.

A call where either version failed (``card_set.failure``: the model could not answer) is counted
apart and left out of agreement and confidence, which would otherwise read a failure as "no card";
its engine time still counts in latency. Three statements, whatever ``limit`` is; works on SQLite and
PostgreSQL alike. ``call_record`` reads every card set of one call, for the page that shows them
side by side.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Connection, and_, select
from sqlalchemy.orm import aliased

from app.audit.tables import CardDecision, CardSet, IssuedCard
from app.db import as_utc

SHADOW = "shadow"
NOT_RUN = ("paused", "retired", "no-active-version")
"""Request-path dispositions where no version ran: the call has nothing to compare."""
BINS = 10
DEFAULT_LIMIT = 500
MAX_LIMIT = 5000


@dataclass(frozen=True)
class Difference:
    """One call where the two versions raised different rules."""

    hook_instance: str
    patient_id: str
    at: datetime
    only_active: tuple[str, ...]
    only_shadow: tuple[str, ...]


@dataclass(frozen=True)
class Histogram:
    """Confidence of one version's cards in ``BINS`` equal bins over [0, 1] (1.0 in the last)."""

    version: str
    counts: tuple[int, ...]

    @property
    def total(self) -> int:
        return sum(self.counts)

    @property
    def shares(self) -> tuple[float, ...]:
        return tuple(count / self.total if self.total else 0.0 for count in self.counts)

    @staticmethod
    def edges() -> list[tuple[float, float]]:
        """Each bin's (lower, upper) bound: lower included, upper excluded but in the last."""
        return [(i / BINS, (i + 1) / BINS) for i in range(BINS)]


@dataclass(frozen=True)
class Latency:
    """Engine time of one version over the paired calls (nearest-rank percentiles), in ms."""

    version: str
    n: int
    p50: float | None
    p95: float | None
    mean: float | None


@dataclass(frozen=True)
class Decisions:
    """Clinicians' latest decision on a set of cards."""

    accepted: int = 0
    overridden: int = 0
    undecided: int = 0

    @property
    def total(self) -> int:
        return self.accepted + self.overridden + self.undecided

    @property
    def acceptance_rate(self) -> float | None:
        decided = self.accepted + self.overridden
        return self.accepted / decided if decided else None


@dataclass(frozen=True)
class Comparison:
    service_id: str
    active_version: str
    shadow_version: str
    limit: int
    calls: int = 0
    """Calls both versions ran on (the most recent ``limit``)."""
    active_failed: int = 0
    shadow_failed: int = 0
    agreed: int = 0
    differences: list[Difference] = field(default_factory=list)
    active_confidence: Histogram = field(default_factory=lambda: Histogram("", (0,) * BINS))
    shadow_confidence: Histogram = field(default_factory=lambda: Histogram("", (0,) * BINS))
    active_latency: Latency | None = None
    shadow_latency: Latency | None = None
    dropped: Decisions = field(default_factory=Decisions)
    """The active version's cards whose rule the shadow did not raise on that call."""
    active_cards: Decisions = field(default_factory=Decisions)
    """Every card of the active version on the compared calls, for reference."""

    @property
    def failed(self) -> int:
        """Calls where either version failed (a call where both failed counts once)."""
        return self.calls - self.compared

    @property
    def compared(self) -> int:
        """Calls where both versions answered: the base of agreement."""
        return self.agreed + len(self.differences)

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None


@dataclass(frozen=True)
class _Pair:
    active_id: int
    shadow_id: int
    hook_instance: str
    patient_id: str
    at: datetime
    active_latency: float | None
    shadow_latency: float | None
    active_failure: str | None
    shadow_failure: str | None


@dataclass(frozen=True)
class _Card:
    uuid: str
    rule_id: str
    confidence: float


def compare(
    connection: Connection,
    service_id: str,
    active_version: str,
    shadow_version: str,
    limit: int = DEFAULT_LIMIT,
) -> Comparison:
    """``shadow_version`` against ``active_version`` on the ``limit`` most recent calls both ran on."""
    limit = max(1, min(limit, MAX_LIMIT))
    pairs = _pairs(connection, service_id, active_version, shadow_version, limit)
    empty = Comparison(service_id, active_version, shadow_version, limit)
    if not pairs:
        return empty
    answered = [p for p in pairs if p.active_failure is None and p.shadow_failure is None]
    cards = _cards(connection, [i for p in answered for i in (p.active_id, p.shadow_id)])
    agreed, differences, dropped_uuids = 0, [], []
    for pair in answered:
        active = cards.get(pair.active_id, [])
        shadow_rules = {card.rule_id for card in cards.get(pair.shadow_id, [])}
        active_rules = {card.rule_id for card in active}
        if active_rules == shadow_rules:
            agreed += 1
            continue
        differences.append(
            Difference(
                pair.hook_instance,
                pair.patient_id,
                pair.at,
                tuple(sorted(active_rules - shadow_rules)),
                tuple(sorted(shadow_rules - active_rules)),
            )
        )
        dropped_uuids += [card.uuid for card in active if card.rule_id not in shadow_rules]
    active_uuids = [card.uuid for p in answered for card in cards.get(p.active_id, [])]
    outcomes = _latest_outcomes(connection, active_uuids)
    return Comparison(
        service_id,
        active_version,
        shadow_version,
        limit,
        calls=len(pairs),
        active_failed=sum(p.active_failure is not None for p in pairs),
        shadow_failed=sum(p.shadow_failure is not None for p in pairs),
        agreed=agreed,
        differences=differences,
        active_confidence=_histogram(active_version, cards, [p.active_id for p in answered]),
        shadow_confidence=_histogram(shadow_version, cards, [p.shadow_id for p in answered]),
        active_latency=_latency(active_version, [p.active_latency for p in pairs]),
        shadow_latency=_latency(shadow_version, [p.shadow_latency for p in pairs]),
        dropped=_decisions(dropped_uuids, outcomes),
        active_cards=_decisions(active_uuids, outcomes),
    )


def _pairs(
    connection: Connection, service_id: str, active_version: str, shadow_version: str, limit: int
) -> list[_Pair]:
    """The request-path card set of the active version joined to the shadow's on the same call,
    newest first (``card_set.hook_instance`` is indexed)."""
    active, shadow = aliased(CardSet), aliased(CardSet)
    query = (
        select(
            active.id.label("active_id"),
            shadow.id.label("shadow_id"),
            active.hook_instance,
            active.patient_id,
            active.created_at,
            active.latency_ms.label("active_latency"),
            shadow.latency_ms.label("shadow_latency"),
            active.failure.label("active_failure"),
            shadow.failure.label("shadow_failure"),
        )
        .join(
            shadow,
            and_(
                shadow.hook_instance == active.hook_instance,
                shadow.service_id == active.service_id,
                shadow.model_version == shadow_version,
                shadow.disposition == SHADOW,
            ),
        )
        .where(
            active.service_id == service_id,
            active.model_version == active_version,
            active.disposition != SHADOW,
            active.disposition.not_in(NOT_RUN),
        )
        .order_by(active.id.desc())
        .limit(limit)
    )
    return [
        _Pair(
            r.active_id,
            r.shadow_id,
            r.hook_instance,
            r.patient_id,
            as_utc(r.created_at),
            r.active_latency,
            r.shadow_latency,
            r.active_failure,
            r.shadow_failure,
        )
        for r in connection.execute(query)
    ]


def _cards(connection: Connection, card_set_ids: list[int]) -> dict[int, list[_Card]]:
    by_set: dict[int, list[_Card]] = defaultdict(list)
    if not card_set_ids:
        return by_set
    query = select(IssuedCard.card_set_id, IssuedCard.uuid, IssuedCard.rule_id, IssuedCard.confidence).where(
        IssuedCard.card_set_id.in_(card_set_ids)
    )
    for row in connection.execute(query):
        by_set[row.card_set_id].append(_Card(row.uuid, row.rule_id, row.confidence))
    return by_set


def _latest_outcomes(connection: Connection, uuids: list[str]) -> dict[str, str]:
    """The latest decision per card (a later decision replaces an earlier one)."""
    if not uuids:
        return {}
    query = (
        select(CardDecision.card_uuid, CardDecision.outcome)
        .where(CardDecision.card_uuid.in_(uuids))
        .order_by(CardDecision.id)
    )
    return dict(connection.execute(query).all())


def _decisions(uuids: list[str], outcomes: dict[str, str]) -> Decisions:
    found = [outcomes.get(uuid) for uuid in uuids]
    accepted = sum(outcome == "accepted" for outcome in found)
    overridden = sum(outcome == "overridden" for outcome in found)
    return Decisions(accepted, overridden, len(found) - accepted - overridden)


def _histogram(version: str, cards: dict[int, list[_Card]], card_set_ids: list[int]) -> Histogram:
    counts = [0] * BINS
    for card_set_id in card_set_ids:
        for card in cards.get(card_set_id, []):
            counts[min(max(math.floor(round(card.confidence * BINS, 9)), 0), BINS - 1)] += 1
    return Histogram(version, tuple(counts))


def _latency(version: str, values: list[float | None]) -> Latency:
    ordered = sorted(value for value in values if value is not None)
    if not ordered:
        return Latency(version, 0, None, None, None)
    return Latency(
        version,
        len(ordered),
        _nearest_rank(ordered, 50),
        _nearest_rank(ordered, 95),
        sum(ordered) / len(ordered),
    )


def _nearest_rank(ordered: list[float], percent: float) -> float:
    return ordered[max(math.ceil(percent / 100 * len(ordered)), 1) - 1]


# One call, every card set: the request path's and each shadow's, side by side.


@dataclass(frozen=True)
class CallCard:
    uuid: str
    rule_id: str
    indicator: str
    confidence: float
    summary: str
    decision: str | None
    override_reason: str | None
    decided_at: datetime | None


@dataclass(frozen=True)
class CallCardSet:
    service_id: str
    hook: str
    model_id: str
    model_version: str
    disposition: str
    patient_id: str
    user_id: str
    at: datetime
    latency_ms: float | None
    failure: str | None
    cards: list[CallCard]

    @property
    def shadow(self) -> bool:
        return self.disposition == SHADOW


def call_record(connection: Connection, hook_instance: str) -> list[CallCardSet]:
    """Every card set recorded for the call, by service, the request path's before its shadows'."""
    sets = connection.execute(
        select(CardSet).where(CardSet.hook_instance == hook_instance).order_by(CardSet.id)
    ).all()
    if not sets:
        return []
    cards: dict[int, list] = defaultdict(list)
    query = select(IssuedCard).where(IssuedCard.card_set_id.in_([row.id for row in sets]))
    for card in connection.execute(query):
        cards[card.card_set_id].append(card)
    decisions = _latest_decisions(connection, [card.uuid for listed in cards.values() for card in listed])
    record = [_call_card_set(row, cards[row.id], decisions) for row in sets]
    return sorted(record, key=lambda s: (s.service_id, s.shadow, s.model_version))


def _latest_decisions(connection: Connection, uuids: list[str]) -> dict:
    if not uuids:
        return {}
    query = select(CardDecision).where(CardDecision.card_uuid.in_(uuids)).order_by(CardDecision.id)
    return {row.card_uuid: row for row in connection.execute(query)}


def _call_card_set(card_set, cards: list, decisions: dict) -> CallCardSet:
    """``card_set``, ``cards`` and the decisions are rows of their tables."""
    return CallCardSet(
        card_set.service_id,
        card_set.hook,
        card_set.model_id,
        card_set.model_version,
        card_set.disposition,
        card_set.patient_id,
        card_set.user_id,
        as_utc(card_set.created_at),
        card_set.latency_ms,
        card_set.failure,
        [_call_card(card, decisions.get(card.uuid)) for card in cards],
    )


def _call_card(card, decision) -> CallCard:
    summary = card.card.get("summary", "") if isinstance(card.card, dict) else ""
    return CallCard(
        card.uuid,
        card.rule_id,
        card.indicator,
        card.confidence,
        str(summary),
        decision.outcome if decision else None,
        (decision.override_display or decision.override_code or decision.user_comment) if decision else None,
        as_utc(decision.received_at) if decision else None,
    )
