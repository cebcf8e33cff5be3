"""Copies of shipped YAML files with one edit, for tests of what a changed or broken file does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from app.files.validated import load_yaml


def edited_copy(source: Path, target: Path, edit: Callable[[Any], object]) -> Path:
    """``source`` loaded, changed in place by ``edit``, and written to ``target`` (may be ``source``)."""
    content = load_yaml(source)
    edit(content)
    YAML(typ="safe", pure=True).dump(content, target)
    return target
