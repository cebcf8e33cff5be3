"""A model card as markdown: what the AI-ModelCard DocumentReference carries and people read."""

from __future__ import annotations

from app.registry import ModelCard
from app.source_attributes import SourceAttributes, paragraphs


def attribute_rows(card: ModelCard) -> list[tuple[str, str, str]]:
    """(HTI-1 paragraph, attribute wording, the card's statement), in the regulation's order."""
    values = card.source_attributes.model_dump()
    fields = SourceAttributes.model_fields
    return [(paragraph, fields[name].description, values[name]) for name, paragraph in paragraphs().items()]


def model_card_markdown(card: ModelCard) -> str:
    lines = [
        f"# {card.label}",
        "",
        f"- Status: {card.status}",
        f"- Kind: {card.kind}",
        f"- Developer: {card.developer}",
        f"- Intended use: {card.intended_use}",
        f"- Out of scope: {card.out_of_scope}",
        "",
        "## ONC HTI-1 source attributes (45 CFR 170.315(b)(11)(iv)(B))",
        "",
        "| paragraph | attribute | statement |",
        "|---|---|---|",
    ]
    lines += [f"| {p} | {wording} | {text.replace('|', '/')} |" for p, wording, text in attribute_rows(card)]
    return "\n".join(lines) + "\n"
