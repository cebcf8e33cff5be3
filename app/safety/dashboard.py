"""The safety dashboard's figures, computed from the durable record only (never from the EHR).

Per model version: cards shown, accepted and overridden by week; override reasons; safety events
per 1,000 AI-assisted encounters; time to detect (report time minus the time the card was shown);
and two drift signals comparing the most recent window with everything before it:

- acceptance rate: a two-proportion z-test, flagged when |z| >= 3 (about p < 0.003 two-sided);
- confidence distribution: the two-sample Kolmogorov-Smirnov statistic D, flagged when D exceeds
  its critical value at alpha = 0.01, c(0.01) * sqrt((n + m) / (n * m)) with c(0.01) = 1.628.

Both need at least 30 observations on each side; below that the signal says "insufficient data"
instead of guessing.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_right
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Connection, select

from app.audit.tables import CardDecision, CardSet, IssuedCard
from app.db import as_utc
from app.safety.events import SafetyEvent

Z_THRESHOLD = 3.0
KS_C_ALPHA_001 = 1.628
MIN_SIDE = 30


@dataclass
class WeekFigures:
    week: str
    shown: int = 0
    accepted: int = 0
    overridden: int = 0

    @property
    def acceptance_rate(self) -> float | None:
        decided = self.accepted + self.overridden
        return round(self.accepted / decided, 4) if decided else None


@dataclass
class Drift:
    signal: str
    test: str
    statistic: float | None
    threshold: float | None
    baseline_n: int
    recent_n: int
    flagged: bool
    note: str = ""


@dataclass
class ModelFigures:
    model: str
    shown: int = 0
    accepted: int = 0
    overridden: int = 0
    ai_assisted_encounters: int = 0
    safety_events: int = 0
    weeks: list[WeekFigures] = field(default_factory=list)
    override_reasons: dict[str, int] = field(default_factory=dict)
    time_to_detect_hours: dict[str, float | None] = field(default_factory=dict)
    drift: list[Drift] = field(default_factory=list)

    @property
    def safety_events_per_1000_encounters(self) -> float | None:
        if not self.ai_assisted_encounters:
            return None
        return round(1000 * self.safety_events / self.ai_assisted_encounters, 2)

    def as_json(self) -> dict:
        return asdict(self) | {
            "safety_events_per_1000_encounters": self.safety_events_per_1000_encounters,
            "weeks": [asdict(w) | {"acceptance_rate": w.acceptance_rate} for w in self.weeks],
        }


@dataclass(frozen=True)
class CardRow:
    uuid: str
    model: str
    patient_id: str
    encounter_id: str | None
    shown_at: datetime
    confidence: float


def safety_summary(connection: Connection, now: datetime, recent_days: int = 7) -> list[ModelFigures]:
    cards = _issued_cards(connection)
    decisions = _decisions(connection)
    events = connection.execute(select(SafetyEvent)).all()
    figures: dict[str, ModelFigures] = {}
    for card in cards:
        figures.setdefault(card.model, ModelFigures(card.model))
    for event in events:
        figures.setdefault(
            f"{event.model_id}-{event.model_version}", ModelFigures(f"{event.model_id}-{event.model_version}")
        )
    recent_from = now - timedelta(days=recent_days)
    for model, model_figures in sorted(figures.items()):
        mine = [c for c in cards if c.model == model]
        _fill_counts(model_figures, mine, decisions)
        _fill_events(model_figures, [e for e in events if f"{e.model_id}-{e.model_version}" == model])
        model_figures.drift = [
            _acceptance_drift(mine, decisions, recent_from),
            _confidence_drift(mine, recent_from),
        ]
    return [figures[model] for model in sorted(figures)]


def _issued_cards(connection: Connection) -> list[CardRow]:
    rows = connection.execute(
        select(
            IssuedCard.uuid,
            CardSet.model_id,
            CardSet.model_version,
            CardSet.patient_id,
            CardSet.encounter_id,
            CardSet.created_at,
            IssuedCard.confidence,
        )
        .join(CardSet, CardSet.id == IssuedCard.card_set_id)
        .where(CardSet.disposition == "issued")
    ).all()
    return [
        CardRow(
            r.uuid,
            f"{r.model_id}-{r.model_version}",
            r.patient_id,
            r.encounter_id,
            as_utc(r.created_at),
            r.confidence,
        )
        for r in rows
    ]


def _decisions(connection: Connection) -> dict[str, tuple[str, str | None]]:
    """The latest decision per card: (outcome, override reason)."""
    rows = connection.execute(
        select(
            CardDecision.card_uuid,
            CardDecision.outcome,
            CardDecision.override_code,
            CardDecision.override_display,
        ).order_by(CardDecision.id)
    ).all()
    return {r.card_uuid: (r.outcome, r.override_display or r.override_code) for r in rows}


def _fill_counts(
    figures: ModelFigures, cards: list[CardRow], decisions: dict[str, tuple[str, str | None]]
) -> None:
    weeks: dict[str, WeekFigures] = {}
    reasons: Counter[str] = Counter()
    encounters = set()
    for card in cards:
        year, week, _ = card.shown_at.isocalendar()
        bucket = weeks.setdefault(f"{year}-W{week:02d}", WeekFigures(f"{year}-W{week:02d}"))
        bucket.shown += 1
        encounters.add(_encounter_key(card))
        outcome, reason = decisions.get(card.uuid, (None, None))
        if outcome == "accepted":
            bucket.accepted += 1
        elif outcome == "overridden":
            bucket.overridden += 1
            reasons[reason or "no reason given"] += 1
    figures.weeks = [weeks[key] for key in sorted(weeks)]
    figures.shown = sum(w.shown for w in figures.weeks)
    figures.accepted = sum(w.accepted for w in figures.weeks)
    figures.overridden = sum(w.overridden for w in figures.weeks)
    figures.override_reasons = dict(reasons.most_common())
    figures.ai_assisted_encounters = len(encounters)


def _encounter_key(card: CardRow) -> tuple[str, str]:
    """An encounter when the hook named one; otherwise the patient's day (an outpatient visit)."""
    return (card.patient_id, card.encounter_id or card.shown_at.date().isoformat())


def _fill_events(figures: ModelFigures, events: list) -> None:
    figures.safety_events = len(events)
    hours = sorted((as_utc(e.detected_at) - as_utc(e.card_shown_at)).total_seconds() / 3600 for e in events)
    figures.time_to_detect_hours = {
        "median": round(statistics.median(hours), 2) if hours else None,
        "max": round(hours[-1], 2) if hours else None,
    }


def _acceptance_drift(cards: list[CardRow], decisions: dict, recent_from: datetime) -> Drift:
    def accepted_of(rows: list[CardRow]) -> list[bool]:
        return [decisions[c.uuid][0] == "accepted" for c in rows if c.uuid in decisions]

    baseline = accepted_of([c for c in cards if c.shown_at < recent_from])
    recent = accepted_of([c for c in cards if c.shown_at >= recent_from])
    drift = Drift(
        "acceptance rate", "two-proportion z-test", None, Z_THRESHOLD, len(baseline), len(recent), False
    )
    if min(len(baseline), len(recent)) < MIN_SIDE:
        drift.note = "insufficient data"
        return drift
    drift.statistic = round(two_proportion_z(sum(baseline), len(baseline), sum(recent), len(recent)), 3)
    drift.flagged = abs(drift.statistic) >= Z_THRESHOLD
    return drift


def _confidence_drift(cards: list[CardRow], recent_from: datetime) -> Drift:
    baseline = [c.confidence for c in cards if c.shown_at < recent_from]
    recent = [c.confidence for c in cards if c.shown_at >= recent_from]
    n, m = len(baseline), len(recent)
    drift = Drift("confidence distribution", "two-sample Kolmogorov-Smirnov", None, None, n, m, False)
    if min(n, m) < MIN_SIDE:
        drift.note = "insufficient data"
        return drift
    drift.statistic = round(ks_statistic(baseline, recent), 4)
    drift.threshold = round(KS_C_ALPHA_001 * math.sqrt((n + m) / (n * m)), 4)
    drift.flagged = drift.statistic > drift.threshold
    return drift


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> float:
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    return 0.0 if se == 0 else (x2 / n2 - x1 / n1) / se


def ks_statistic(first: list[float], second: list[float]) -> float:
    """The largest distance between the two empirical distribution functions."""
    values = sorted(set(first) | set(second))
    a, b = sorted(first), sorted(second)
    return max(abs(_ecdf(a, v) - _ecdf(b, v)) for v in values)


def _ecdf(ordered: list[float], value: float) -> float:
    return bisect_right(ordered, value) / len(ordered)
