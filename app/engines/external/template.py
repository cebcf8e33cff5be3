"""Card text and suggestion resources from a model card's templates, never evaluated as code.

Summary and detail are ``str.format``-style (``"Readmission risk {score:.0%}"``) but rendered piece
by piece: only plain names the card declares (``score``, ``indicator``, the input names), no
attribute or index access, no conversion, and a short format spec without width, so a card can
neither reach into Python objects nor ask for a string of a billion spaces. Suggestion resources
are FHIR JSON whose strings may hold ``{{patient}}`` and ``{{encounter}}``, filled in as references.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from string import Formatter

from pydantic import JsonValue

FORMAT_SPEC = re.compile(r"^[+ ]?(\.\d)?[dfeEgG%]?$")
PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
PLACEHOLDERS = frozenset({"patient", "encounter"})

Pieces = list[tuple[str, str | None, str | None, str | None]]


def check_text(template: str, samples: Mapping[str, object]) -> None:
    """``ValueError`` naming the first field that could not be rendered with these sample values."""
    for _, field, spec, conversion in _pieces(template):
        if field is None:
            continue
        if field not in samples:
            raise ValueError(f"unknown field {{{field}}} (known: {', '.join(sorted(samples))})")
        if conversion is not None or not FORMAT_SPEC.match(spec or ""):
            raise ValueError(f"field {{{field}}}: only a format such as :.2f, :.0% or :d is allowed")
        try:
            format(samples[field], spec or "")
        except ValueError as error:
            raise ValueError(f"field {{{field}}}: {error}") from None


def render_text(template: str, values: Mapping[str, object]) -> str:
    return "".join(
        literal + ("" if field is None else format(values[field], spec or ""))
        for literal, field, spec, _ in _pieces(template)
    )


def placeholders_in(resource: JsonValue) -> set[str]:
    """Every ``{{name}}`` in the resource's strings, at any depth."""
    if isinstance(resource, str):
        return set(PLACEHOLDER.findall(resource))
    if isinstance(resource, dict):
        return set().union(*(placeholders_in(value) for value in resource.values()))
    if isinstance(resource, list):
        return set().union(*(placeholders_in(value) for value in resource))
    return set()


def fill_resource(resource: JsonValue, references: Mapping[str, str]) -> JsonValue:
    """A copy with each placeholder replaced by its reference (``Patient/123``)."""
    if isinstance(resource, str):
        return PLACEHOLDER.sub(lambda match: references[match.group(1)], resource)
    if isinstance(resource, dict):
        return {key: fill_resource(value, references) for key, value in resource.items()}
    if isinstance(resource, list):
        return [fill_resource(value, references) for value in resource]
    return resource


def _pieces(template: str) -> Pieces:
    try:
        return list(Formatter().parse(template))
    except ValueError as error:
        raise ValueError(f"not a valid template ({error})") from None
