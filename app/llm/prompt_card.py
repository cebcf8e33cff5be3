"""Prompt cards: versioned prompt templates with their indications, contraindications and failure modes.

A prompt version is immutable: the card records the SHA-256 of its content (id, version and
template), and a card whose template changed without a new version and a new hash does not
load, naming ``content_sha256``. Cards are checked at start, like model cards, so the service
never sends a prompt nobody reviewed.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path
from string import Template
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from app.files.validated import InvalidFile, load_validated, load_yaml
from fhir_profiles.prompt_card import input_prompt_document

PROMPTS_DIRECTORY = Path(__file__).parent / "prompt_cards"
RESOURCES_PLACEHOLDER = "resources"


class PromptTemplate(BaseModel):
    """The messages sent; ``user`` receives the de-identified resources as ``${resources}``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    system: str = Field(min_length=1)
    user: str = Field(min_length=1)

    @field_validator("user")
    @classmethod
    def _has_placeholder(cls, user: str) -> str:
        if f"${{{RESOURCES_PLACEHOLDER}}}" not in user:
            raise ValueError(f"must contain ${{{RESOURCES_PLACEHOLDER}}}")
        return user


class FailureMode(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    mitigation: str = Field(min_length=1)


class PromptCard(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    version: int = Field(ge=1)
    name: str = Field(min_length=1)
    status: Literal["active", "retired"]
    released: date
    model_id: str = Field(min_length=1)
    indications: str = Field(min_length=1)
    contraindications: str = Field(min_length=1)
    failure_modes: tuple[FailureMode, ...] = Field(min_length=1)
    template: PromptTemplate
    content_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("content_sha256")
    @classmethod
    def _unchanged(cls, recorded: str, info: ValidationInfo) -> str:
        data = info.data
        if {"id", "version", "template"} <= data.keys() and recorded != content_hash(
            data["id"], data["version"], data["template"]
        ):
            raise ValueError(
                "does not match the card's content: a changed prompt needs a new version "
                "and its new hash (countersign prompt hash FILE)"
            )
        return recorded

    @property
    def key(self) -> str:
        """The registry identifier, as in the AI-InputPrompt example: ``renal-dosing-prompt@7``."""
        return f"{self.id}-prompt@{self.version}"

    def messages(self, resources_json: str) -> list[dict]:
        """Chat messages with the (already de-identified) resources filled in."""
        user = Template(self.template.user).safe_substitute({RESOURCES_PLACEHOLDER: resources_json})
        return [{"role": "system", "content": self.template.system}, {"role": "user", "content": user}]

    def markdown(self) -> str:
        """The template as reviewers read it, and as the AI-InputPrompt document carries it."""
        return (
            f"# {self.name} (version {self.version})\n\n"
            f"## System message\n\n{self.template.system.strip()}\n\n"
            f"## User message\n\n{self.template.user.strip()}\n"
        )


def content_hash(prompt_id: str, version: int, template: PromptTemplate) -> str:
    """SHA-256 of the canonical JSON of what is sent: any edit changes it."""
    content = {"id": prompt_id, "version": version, **template.model_dump()}
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def recorded_and_actual_hash(path: Path) -> tuple[str, str]:
    """For authors of a new version: the hash in the file and the one its content needs."""
    data = load_yaml(path)
    actual = content_hash(data["id"], data["version"], PromptTemplate.model_validate(data["template"]))
    return str(data.get("content_sha256", "")), actual


def load_prompt_cards(directory: Path | None = None) -> dict[str, PromptCard]:
    """Every card by prompt id, the active version winning; a version defined twice is refused."""
    directory = directory or PROMPTS_DIRECTORY
    cards: dict[str, PromptCard] = {}
    seen: set[tuple[str, int]] = set()
    for path in sorted(directory.glob("*.yaml")):
        card = load_validated(path, PromptCard)
        if (card.id, card.version) in seen:
            raise InvalidFile(f"{path.name}: version: {card.id} version {card.version} is defined twice")
        seen.add((card.id, card.version))
        if card.status == "active" or card.id not in cards:
            cards[card.id] = card
    return cards


def prompt_document(card: PromptCard) -> dict:
    """The card's template as an AI-InputPrompt DocumentReference, for Provenance to cite."""
    description = (
        f"{card.name}: prompt template version {card.version} (patient data is inserted at run time "
        "and is NOT stored here)."
    )
    return input_prompt_document(
        card.key, card.version, card.markdown(), card.content_sha256, description, card.released
    )
