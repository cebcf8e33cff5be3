"""Configuration files in the repository (YAML) loaded through a pydantic schema.

An invalid file stops the service at start, and the message names the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML

Model = TypeVar("Model", bound=BaseModel)


class InvalidFile(Exception):
    """A file that breaks its schema."""


def load_yaml(path: Path) -> Any:
    """Plain values only (the safe loader builds no objects; YAML dates become ``date``). ruamel's
    own parser, which reads YAML 1.2: libyaml (``ruamel.yaml.clib``) parses five times faster but
    reads YAML 1.1, and refuses flow mappings with an unquoted URL (``{system: http://…}``) that a
    card's author may write and this parser accepts. A new loader per call, because ruamel's
    ``YAML`` objects are not safe to share between threads."""
    return YAML(typ="safe", pure=True).load(path)


def load_validated(path: Path, model: type[Model]) -> Model:
    try:
        return model.model_validate(load_yaml(path))
    except ValidationError as error:
        problem = error.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(part) for part in problem["loc"])
        raise InvalidFile(f"{path.name}: {field}: {problem['msg']}") from None
