"""Our local profiles as StructureDefinitions, shipped with the package (canonical URLs in meta.profile)."""

from __future__ import annotations

import json
from pathlib import Path

from fhir.resources.R4B.structuredefinition import StructureDefinition

DIRECTORY = Path(__file__).parent / "structure_definitions"


def structure_definitions() -> dict[str, dict]:
    """Every local StructureDefinition by canonical URL, each validated as an R4 resource."""
    definitions = {}
    for path in sorted(DIRECTORY.glob("*.json")):
        definition = json.loads(path.read_text())
        StructureDefinition.model_validate(definition)
        definitions[definition["url"]] = definition
    return definitions
