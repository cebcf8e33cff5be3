"""A model card as markdown: what the AI-ModelCard DocumentReference carries and people read."""

from __future__ import annotations

from app.governance.measured import Measure
from app.governance.model_card import ModelCard
from app.governance.source_attributes import SourceAttributes, paragraphs


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
    return "\n".join(lines + _measured_lines(card)) + "\n"


def figure(measure: Measure) -> str:
    """A measure as people read it: value, 95 % interval, and the counts behind it."""
    if measure.value is None:
        return "not estimable (no cases)"
    text = f"{measure.value:.2f}"
    if measure.ci_low is not None:
        text += f" ({measure.ci_low:.2f}-{measure.ci_high:.2f})"
    if measure.numerator is not None:
        text += f", {measure.numerator}/{measure.denominator}"
    return text


def _measured_lines(card: ModelCard) -> list[str]:
    measured = card.measured
    if measured is None:
        return ["", "## Measured performance", "", "Not yet measured."]
    lines = [
        "",
        "## Measured performance",
        "",
        f"`{measured.command}` on {measured.evaluated_on}: {measured.cohort_size} synthetic patients, "
        f"dataset {measured.dataset} (sha256 {measured.dataset_sha256}).",
        "",
        "| scope | subgroup | measure | value (95 % CI), count |",
        "|---|---|---|---|",
    ]
    for m in (*measured.measures, *measured.subgroups):
        subgroup = "all" if m.variable == "all" else f"{m.variable}: {m.group}"
        lines.append(f"| {m.scope} | {subgroup} | {m.measure} | {figure(m)} |")
    return lines
