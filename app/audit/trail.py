"""Reading the ledger for people: recent entries, newest first, filtered by kind, date, model and
version, each with the model it is about and a sentence that says what happened (``sentences``).

An entry names its model in its content: ``model_id`` and ``model_version`` (status changes and
promotions, which also name a ``from_version``), ``"model": "id@version"`` (card sets),
``"model": "id-version"`` (safety events) or ``service``. A clinician's decision or review names
only its card, and the card's set names the model. The model filter narrows in SQL on the content
column, which holds canonical JSON (compact, sorted keys: a key and its value are adjacent text),
and on the decision's card set, then decides exactly in Python: no schema change, and the page
stays one bounded read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, timedelta

import orjson
from sqlalchemy import ColumnElement, Connection, Select, and_, exists, false, or_, select

from app.audit.ledger import LedgerEntry
from app.audit.sentences import describe, readable_time
from app.audit.tables import CardDecision, CardSet, IssuedCard

PAGE_SIZE = 200
#: A page filtered by model reads at most this many candidate rows looking for its matches.
SCAN_LIMIT = 10 * PAGE_SIZE
#: A safety event's ``model`` is ``{id}-{version}``; an id never holds a dot, a version always does.
ID_DASH_VERSION = re.compile(r"^(?P<id>[a-z0-9][a-z0-9-]*)-(?P<version>\d+(?:\.\d+)+)$")
LIKE_ESCAPE = "/"


@dataclass(frozen=True)
class TrailFilter:
    kind: str | None = None
    since: date | None = None
    until: date | None = None
    model: str | None = None
    version: str | None = None

    @property
    def by_model(self) -> bool:
        return bool(self.model or self.version)


@dataclass(frozen=True)
class EntryModel:
    """The model an entry is about and the versions it names: one mostly; a promotion names the
    candidate and the version it replaces, a rollback the version left and the one restored."""

    id: str
    versions: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"{self.id} {self.versions[0]}" if self.versions else self.id

    def matches(self, model_id: str | None, version: str | None) -> bool:
        return (model_id is None or model_id == self.id) and (version is None or version in self.versions)


@dataclass(frozen=True)
class TrailRow:
    entry: LedgerEntry
    content: dict
    model: EntryModel | None
    sentence: str

    @property
    def recorded(self) -> str:
        return readable_time(self.entry.recorded_at)


def model_of(content: dict) -> EntryModel | None:
    """The model an entry's content names, if it names one itself (decisions name only a card)."""
    model_id = content.get("model_id")
    if isinstance(model_id, str):
        named = (content.get("model_version"), content.get("from_version"))
        return EntryModel(model_id, tuple(dict.fromkeys(v for v in named if isinstance(v, str))))
    model = content.get("model")
    if isinstance(model, str):
        if "@" in model:
            model_id, _, version = model.partition("@")
            return EntryModel(model_id, (version,))
        found = ID_DASH_VERSION.match(model)
        return EntryModel(found["id"], (found["version"],)) if found else EntryModel(model)
    service = content.get("service")
    return EntryModel(service) if isinstance(service, str) else None


def kinds(connection: Connection) -> list[str]:
    return list(connection.execute(select(LedgerEntry.kind).distinct().order_by(LedgerEntry.kind)).scalars())


def entries(connection: Connection, trail_filter: TrailFilter, limit: int = PAGE_SIZE) -> list[TrailRow]:
    """The newest ``limit`` entries the filter keeps. Unfiltered by model, one query; by model, the
    SQL narrows to candidates and Python keeps the exact matches, reading older candidates until
    the page is full or ``SCAN_LIMIT`` rows were read."""
    query = _query(trail_filter)
    rows: list[TrailRow] = []
    read = 0
    older_than: int | None = None
    while True:
        page = query if older_than is None else query.where(LedgerEntry.seq < older_than)
        batch = [LedgerEntry.model_validate(row._mapping) for row in connection.execute(page.limit(limit))]
        read += len(batch)
        rows += [row for row in _rows(connection, batch) if _kept(row, trail_filter)]
        if len(rows) >= limit or len(batch) < limit or not trail_filter.by_model or read >= SCAN_LIMIT:
            return rows[:limit]
        older_than = batch[-1].seq


def filter_choices(registry: Iterable, trail_filter: TrailFilter) -> tuple[list[str], list[str]]:
    """The model ids and versions the filter offers: from the model registry (whether it maps ids
    to cards or yields its cards), the versions of the chosen model only, and any value already
    chosen, so the form always shows what the page is filtered by."""
    cards = list(registry.values() if isinstance(registry, Mapping) else registry)
    ids = {getattr(card, "id", card) for card in cards}
    versions = {
        card.version
        for card in cards
        if hasattr(card, "version") and trail_filter.model in (None, getattr(card, "id", card))
    }
    ids |= {trail_filter.model} if trail_filter.model else set()
    versions |= {trail_filter.version} if trail_filter.version else set()
    return sorted(ids), sorted(versions, key=_version_order)


def _version_order(version: str) -> tuple:
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part) for part in version.split("."))


def _query(trail_filter: TrailFilter) -> Select:
    """ISO timestamps sort as text, so date bounds compare on ``recorded_at`` directly."""
    query = select(LedgerEntry).order_by(LedgerEntry.seq.desc())
    if trail_filter.kind:
        query = query.where(LedgerEntry.kind == trail_filter.kind)
    if trail_filter.since:
        query = query.where(LedgerEntry.recorded_at >= trail_filter.since.isoformat())
    if trail_filter.until:
        query = query.where(LedgerEntry.recorded_at < (trail_filter.until + timedelta(days=1)).isoformat())
    if trail_filter.by_model:
        query = query.where(_candidates(trail_filter.model, trail_filter.version))
    return query


def _candidates(model_id: str | None, version: str | None) -> ColumnElement[bool]:
    """Entries that may be about the model (and version): a superset of the exact matches."""
    named = [_holds(_pair("model_id", model_id))] if model_id else []
    if version:
        named.append(or_(_holds(_pair("model_version", version)), _holds(_pair("from_version", version))))
    if model_id and version:
        in_text = [_holds(f'"model":"{_text(f"{model_id}{sep}{version}")}"') for sep in "@-"]
    elif model_id:
        in_text = [_holds(f'"model":"{_text(f"{model_id}{sep}")}') for sep in "@-"]
    else:
        in_text = [_holds('"model":"', f'{_text(f"{sep}{version}")}"') for sep in "@-"]
    by_service = [_holds(_pair("service", model_id))] if model_id and not version else []
    card_set = [CardSet.model_id == model_id] if model_id else []
    card_set += [CardSet.model_version == version] if version else []
    decision = and_(
        LedgerEntry.record_table == CardDecision.__tablename__,
        exists(
            select(CardDecision.id)
            .join(IssuedCard, IssuedCard.uuid == CardDecision.card_uuid)
            .join(CardSet, CardSet.id == IssuedCard.card_set_id)
            .where(CardDecision.id == LedgerEntry.record_id, *card_set)
        ),
    )
    # Other entries about a card (a review's) are decided in Python, by their card's set.
    other_card = and_(
        _holds('"card":"'),
        or_(LedgerEntry.record_table.is_(None), LedgerEntry.record_table != CardDecision.__tablename__),
    )
    return or_(and_(*named) if named else false(), *in_text, *by_service, decision, other_card)


def _text(value: str) -> str:
    """``value`` as it appears inside a JSON string in the canonical content."""
    return orjson.dumps(value).decode()[1:-1]


def _pair(key: str, value: str) -> str:
    return f'"{_text(key)}":"{_text(value)}"'


def _holds(*fragments: str) -> ColumnElement[bool]:
    """The content holds these fragments, in this order (LIKE, its wildcards escaped)."""
    escaped = (re.sub(r"([%_/])", r"/\1", fragment) for fragment in fragments)
    return LedgerEntry.content.like(f"%{'%'.join(escaped)}%", escape=LIKE_ESCAPE)


def _rows(connection: Connection, batch: list[LedgerEntry]) -> list[TrailRow]:
    contents = [_content(entry) for entry in batch]
    named = [model_of(content) for content in contents]
    cards = {content.get("card") for content, model in zip(contents, named, strict=True) if model is None}
    by_card = _card_models(connection, {card for card in cards if isinstance(card, str)})
    rows = []
    for entry, content, model in zip(batch, contents, named, strict=True):
        about = model or by_card.get(content.get("card"))
        sentence = describe(entry.kind, content, about.label if about else None)
        rows.append(TrailRow(entry=entry, content=content, model=about, sentence=sentence))
    return rows


def _content(entry: LedgerEntry) -> dict:
    try:
        content = orjson.loads(entry.content)
    except orjson.JSONDecodeError:
        return {}
    return content if isinstance(content, dict) else {}


def _card_models(connection: Connection, cards: set[str]) -> dict[str, EntryModel]:
    if not cards:
        return {}
    found = connection.execute(
        select(IssuedCard.uuid, CardSet.model_id, CardSet.model_version)
        .join(CardSet, CardSet.id == IssuedCard.card_set_id)
        .where(IssuedCard.uuid.in_(sorted(cards)))
    )
    return {uuid: EntryModel(model_id, (version,)) for uuid, model_id, version in found}


def _kept(row: TrailRow, trail_filter: TrailFilter) -> bool:
    if not trail_filter.by_model:
        return True
    return row.model is not None and row.model.matches(trail_filter.model, trail_filter.version)
