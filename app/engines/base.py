"""The engine interface: patient data in, advice (with the inputs it used) out."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol

from cds_hooks.advice import AdviceSet


@dataclass(frozen=True)
class PatientData:
    """What an engine may read: the prefetched resources and the hook's draft orders, as plain JSON."""

    hook: str
    patient_id: str
    resources: tuple[dict, ...] = ()
    draft_orders: tuple[dict, ...] = ()
    selections: tuple[str, ...] = ()
    encounter_id: str | None = None

    @cached_property
    def _by_type(self) -> dict[str, list[dict]]:
        index: dict[str, list[dict]] = defaultdict(list)
        for resource in self.resources:
            index[resource.get("resourceType", "")].append(resource)
        return index

    def of_type(self, resource_type: str) -> list[dict]:
        """Prefetched resources of one type (draft orders are separate: see ``draft_orders``)."""
        return self._by_type.get(resource_type, [])

    @property
    def patient(self) -> dict | None:
        patients = self.of_type("Patient")
        return patients[0] if patients else None

    @property
    def encounter(self) -> dict | None:
        """The hook's encounter (``context.encounterId``), when it was prefetched."""
        wanted = (self.encounter_id or "").removeprefix("Encounter/")
        return next((e for e in self.of_type("Encounter") if e.get("id") == wanted), None)


class ModelUnavailable(Exception):
    """The model could not answer (timeout, refused, malformed answer): no card, and the reason,
    a short class with no patient data in it, is recorded with the call."""


class Engine(Protocol):
    def suggest(self, data: PatientData) -> AdviceSet:
        """Pure function of ``data``: no I/O, deterministic, fast (it runs on the request path)."""
