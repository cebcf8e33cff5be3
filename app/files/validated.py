"""Configuration files in the repository (YAML) loaded through a pydantic schema.

An invalid file stops the service at start, and the message names the file and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

Model = TypeVar("Model", bound=BaseModel)


class InvalidFile(Exception):
    """A file that breaks its schema."""


def load_validated(path: Path, model: type[Model]) -> Model:
    try:
        return model.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as error:
        problem = error.errors(include_url=False, include_input=False)[0]
        field = ".".join(str(part) for part in problem["loc"])
        raise InvalidFile(f"{path.name}: {field}: {problem['msg']}") from None
