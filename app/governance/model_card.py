"""Model registry: every version of every model, read from model cards (one YAML file per version).

Cards are files validated by a schema, so an invalid card stops the service at start with the
field named, instead of serving advice from an undocumented model. A card's ``status`` is where the
version starts; afterwards change control decides (``app.governance.lifecycle``). Cards come from
the repository and, for the hospital's own models, from ``COUNTERSIGN_MODEL_CARDS_DIR``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.engines.external import ExternalModel
from app.files.validated import InvalidFile, load_validated
from app.governance.measured import MeasuredPerformance
from app.governance.policy import Policy
from app.governance.source_attributes import SourceAttributes

CARDS_DIRECTORY = Path(__file__).parent / "model_cards"
MODEL_CARDS_KEY = "model_cards"
ModelStatus = Literal["active", "shadow", "paused", "retired"]


class ModelCard(BaseModel):
    """What a CMIO must know about one model version before it touches a patient."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: str = Field(pattern=r"^\d+\.\d+\.\d+$")
    name: str = Field(min_length=1)
    status: ModelStatus
    kind: str = Field(min_length=1)
    developer: str = Field(min_length=1)
    intended_use: str = Field(min_length=1)
    intended_users: str = Field(min_length=1)
    out_of_scope: str = Field(min_length=1)
    knowledge_base: str | None = None
    endpoint: ExternalModel | None = None
    """A model the hospital serves itself (``docs/EXTERNAL_MODELS.md``); no knowledge base then."""
    policy: Policy
    source_attributes: SourceAttributes
    measured: MeasuredPerformance | None = None

    @model_validator(mode="after")
    def _one_source_of_advice(self) -> ModelCard:
        if self.endpoint is not None and self.knowledge_base is not None:
            raise ValueError("endpoint: an external model has no knowledge_base; remove one of them")
        return self

    @property
    def external(self) -> bool:
        return self.endpoint is not None

    @property
    def key(self) -> str:
        return f"{self.id}-{self.version}"

    @property
    def key_pair(self) -> tuple[str, str]:
        return self.id, self.version

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    def page_url(self, base_url: str) -> str:
        """The model card page that cards, Devices and the API link to."""
        return f"{base_url}/app/models/{self.id}"


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@dataclass(frozen=True)
class CardFiles:
    """Where a registry's cards are read from, and each card file's path, modification time and
    size: a registry read from them holds as long as these do."""

    directories: tuple[Path | None, ...]
    stats: tuple[tuple[Path, int, int], ...]

    @classmethod
    def now(cls, directories: tuple[Path | None, ...]) -> CardFiles:
        stats = []
        for directory in directories:
            for path in _cards_in(directory) if directory else ():
                stat = path.stat()
                stats.append((path, stat.st_mtime_ns, stat.st_size))
        return cls(directories, tuple(stats))


class ModelRegistry:
    """Every model version by id and version; iterating yields every card, oldest version first.
    ``files``: the card files as they stood when read."""

    def __init__(
        self, cards: Iterable[ModelCard], paths: dict[tuple[str, str], Path], files: CardFiles
    ) -> None:
        ordered = sorted(cards, key=lambda card: (card.id, version_key(card.version)))
        self._versions: dict[str, dict[str, ModelCard]] = {}
        for card in ordered:
            self._versions.setdefault(card.id, {})[card.version] = card
        self._paths = paths
        self.files = files

    def __iter__(self) -> Iterator[ModelCard]:
        return (card for versions in self._versions.values() for card in versions.values())

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._versions

    def ids(self) -> list[str]:
        return list(self._versions)

    def versions(self, model_id: str) -> list[ModelCard]:
        """Oldest first; empty for an unknown id."""
        return list(self._versions.get(model_id, {}).values())

    def card(self, model_id: str, version: str) -> ModelCard | None:
        return self._versions.get(model_id, {}).get(version)

    def path(self, card: ModelCard) -> Path:
        """The file the card was read from (``countersign eval`` writes its figures there)."""
        return self._paths[card.key_pair]

    def initial(self, model_id: str) -> ModelCard:
        """The version the card files make active, else the newest: who answers before any change."""
        versions = self.versions(model_id)
        return next((card for card in versions if card.status == "active"), versions[-1])


def load_model_cards(*directories: Path | None) -> ModelRegistry:
    """Every card in ``directories`` (default: the repository's); a version declared twice or two
    versions of one model both ``active`` in their files stop the start, naming the files."""
    files = CardFiles.now(directories or (CARDS_DIRECTORY,))  # first: a file changed later reads as changed
    cards: dict[tuple[str, str], ModelCard] = {}
    paths: dict[tuple[str, str], Path] = {}
    for path, *_ in files.stats:
        card = load_validated(path, ModelCard)
        if card.key_pair in cards:
            raise InvalidFile(f"{path.name}: version: {card.key} is also declared in {paths[card.key_pair]}")
        _refuse_second_active(card, path, cards.values(), paths)
        cards[card.key_pair] = card
        paths[card.key_pair] = path
    return ModelRegistry(cards.values(), paths, files)


def _refuse_second_active(
    card: ModelCard, path: Path, loaded: Iterable[ModelCard], paths: dict[tuple[str, str], Path]
) -> None:
    if card.status != "active":
        return
    for other in loaded:
        if other.id == card.id and other.status == "active":
            raise InvalidFile(
                f"{path.name}: status: {card.id} {other.version} is already active in "
                f"{paths[other.key_pair].name}; at most one version of a model may be active"
            )


def _cards_in(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise InvalidFile(f"{directory}: not a directory of model cards")
    return sorted(directory.glob("*.yaml"))
