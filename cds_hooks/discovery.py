"""Service descriptors and the discovery document (reference §1, §2.3)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from cds_hooks.hooks import HOOKS, USER_TOKENS

TOKEN = re.compile(r"\{\{\s*([^}]*?)\s*\}\}")


@dataclass(frozen=True)
class ServiceDescriptor:
    """One discovery entry. ``(id, hook)`` is the unique key: an id may serve several hooks."""

    id: str
    hook: str
    title: str
    description: str
    prefetch: dict[str, str] = field(default_factory=dict)
    usage_requirements: str = ""

    def __post_init__(self) -> None:
        if self.hook not in HOOKS:
            raise ValueError(f"service {self.id}: unknown hook {self.hook!r}")
        for key, template in self.prefetch.items():
            for token in TOKEN.findall(template):
                if token not in allowed_tokens(self.hook):
                    raise ValueError(f"service {self.id}: prefetch {key!r} uses {{{{{token}}}}}")

    def as_discovery(self) -> dict:
        entry: dict = {
            "hook": self.hook,
            "title": self.title,
            "description": self.description,
            "id": self.id,
        }
        if self.prefetch:
            entry["prefetch"] = dict(self.prefetch)
        if self.usage_requirements:
            entry["usageRequirements"] = self.usage_requirements
        return entry


def allowed_tokens(hook: str) -> set[str]:
    """Prefetch tokens the spec allows for ``hook``: its token context fields and the user ids."""
    return {f"context.{name}" for name in HOOKS[hook].prefetch_tokens} | set(USER_TOKENS.values())


def discovery_document(descriptors: list[ServiceDescriptor]) -> dict:
    return {"services": [descriptor.as_discovery() for descriptor in descriptors]}
