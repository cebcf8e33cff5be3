"""Model registry: which model version serves which service, read from model cards in the repository.

Cards are files (YAML) validated by a schema, so an invalid card stops the service at start with
the field named, instead of serving advice from an undocumented model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.files.validated import load_validated
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
    policy: Policy
    source_attributes: SourceAttributes
    measured: MeasuredPerformance | None = None

    @property
    def key(self) -> str:
        return f"{self.id}-{self.version}"

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    def page_url(self, base_url: str) -> str:
        """The model card page that cards, Devices and the API link to."""
        return f"{base_url}/app/models/{self.id}"


def load_model_cards(directory: Path = CARDS_DIRECTORY) -> dict[str, ModelCard]:
    """Every card in ``directory`` by model id; the one with status ``active`` wins per id."""
    cards: dict[str, ModelCard] = {}
    for path in sorted(directory.glob("*.yaml")):
        card = load_validated(path, ModelCard)
        if card.status == "active" or card.id not in cards:
            cards[card.id] = card
    return cards
