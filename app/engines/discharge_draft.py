"""The shape of a discharge-summary draft, whoever wrote it: sections of sentences, each citing sources.

The same schema is the language model's structured output (requested and validated) and what
the offline summariser builds, so the card and the document are rendered one way.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from cds_hooks.cards import escape_markdown


class Sentence(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    text: str = Field(min_length=1, max_length=1000)
    sources: list[str] = Field(min_length=1, max_length=20)


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(min_length=1, max_length=80)
    sentences: list[Sentence] = Field(min_length=1, max_length=40)


class SummaryDraft(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    sections: list[Section] = Field(min_length=1, max_length=10)

    @property
    def cited(self) -> list[str]:
        """Every cited reference once, in order of first citation."""
        lines = (line for section in self.sections for line in section.sentences)
        return list(dict.fromkeys(source for line in lines for source in line.sources))


def draft_markdown(draft: SummaryDraft, heading_level: int = 2) -> str:
    """Markdown with each sentence's citations; text from the record or the model is escaped."""
    hashes = "#" * heading_level
    lines: list[str] = []
    for section in draft.sections:
        lines.extend([f"{hashes} {escape_markdown(section.title)}", ""])
        for sentence in section.sentences:
            cited = ", ".join(f"`{escape_markdown(source)}`" for source in sentence.sources)
            lines.append(f"- {escape_markdown(sentence.text)} [{cited}]")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
