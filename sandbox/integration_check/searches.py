"""Finding what the write-back left, as a CMIO would look for it: by patient, by target, with
``_revinclude``. A resource counts as found only if one of these searches returns it, so the check
proves at once that it is on the server and that the server indexes what a CMIO searches by.

- Provenance: ``Provenance?entity=Patient/…`` (ours name the patient as a source), ``?target=``
  the resource the EHR changed, and ``DocumentReference?patient=…&_revinclude=Provenance:target``;
- AuditEvent, Task, GuidanceResponse, RequestGroup, DocumentReference: ``?patient=Patient/…``;
- a resource created by a conditional create on an identifier (our Devices): by that identifier;
- any other type: by its delivery tag (``_tag``, a search parameter of every resource).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from fhir_profiles.common import DELIVERY_TAG_SYSTEM
from sandbox.integration_check.client import FhirClient, Found
from sandbox.integration_check.expected import Expected
from sandbox.integration_check.hints import search_hint

BY_PATIENT = frozenset({"AuditEvent", "Task", "GuidanceResponse", "RequestGroup", "DocumentReference"})
REVINCLUDE = "Provenance:target"


@dataclass(frozen=True)
class Search:
    resource_type: str
    params: tuple[tuple[str, str], ...]

    def label(self, looking_for: str) -> str:
        """The search without its values (ids): ``?entity`` when it searches ``looking_for``,
        ``DocumentReference?patient&_revinclude=Provenance:target`` when it does not."""
        names = [f"{name}={value}" if name == "_revinclude" else name for name, value in self.params]
        searched = "" if self.resource_type == looking_for else self.resource_type
        return f"{searched}?{'&'.join(names)}"


@dataclass(frozen=True)
class About:
    """What a step's resources are about: its patient, the references the EHR changed (for
    ``Provenance?target``), and whether it wrote a document (for ``_revinclude``)."""

    patient_id: str
    applied: tuple[str, ...] = ()
    documents: bool = False


@dataclass
class Lookup:
    """The expected resources of one type that the searches found, and why any search failed."""

    resource_type: str
    found: list[dict] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


@dataclass
class CmioSearches:
    client: FhirClient
    _done: dict[Search, Found] = field(default_factory=dict)

    def run(self, search: Search) -> Found:
        """Each distinct search once: several steps share a patient."""
        if search not in self._done:
            self._done[search] = self.client.search(search.resource_type, dict(search.params))
        return self._done[search]

    def look_for(self, resource_type: str, expected: list[Expected], about: About) -> Lookup:
        """The ``expected`` resources of ``resource_type`` that the searches return."""
        lookup = Lookup(resource_type)
        for item in (e for e in expected if e.by_identifier):
            search = Search(resource_type, tuple(parse_qsl(item.condition)))
            lookup.found += self._results(lookup, search)[:1]
        wanted = {e.key for e in expected if not e.by_identifier}
        matches: dict[str, dict] = {}
        for search in _searches(resource_type, about, wanted):
            for resource in self._results(lookup, search):
                key = delivery_key(resource)
                if resource.get("resourceType") == resource_type and key in wanted:
                    matches.setdefault(key, resource)
        lookup.found += matches.values()
        return lookup

    def _results(self, lookup: Lookup, search: Search) -> list[dict]:
        """The search's resources; a refusal is noted in ``lookup`` with its fix."""
        label = search.label(lookup.resource_type)
        if label not in lookup.labels:
            lookup.labels.append(label)
        answer = self.run(search)
        if answer.refusal is None:
            return answer.resources
        names = [name for name, _ in search.params]
        refusal = answer.refusal
        lookup.refusals.append(search_hint(refusal.status, refusal.outcome, search.resource_type, names))
        return []


def delivery_key(resource: dict) -> str | None:
    """The delivery tag Countersign gave the resource (None: not one of ours)."""
    tags = resource.get("meta", {}).get("tag", [])
    return next((tag.get("code") for tag in tags if tag.get("system") == DELIVERY_TAG_SYSTEM), None)


def _searches(resource_type: str, about: About, keys: set[str]) -> Iterator[Search]:
    if not keys:
        return
    patient = f"Patient/{about.patient_id}"
    if resource_type == "Provenance":
        yield Search("Provenance", (("entity", patient),))
        yield from (Search("Provenance", (("target", ref),)) for ref in about.applied)
        if about.documents:
            yield Search("DocumentReference", (("patient", patient), ("_revinclude", REVINCLUDE)))
    elif resource_type in BY_PATIENT:
        yield Search(resource_type, (("patient", patient),))
    else:
        yield from (
            Search(resource_type, (("_tag", f"{DELIVERY_TAG_SYSTEM}|{key}"),)) for key in sorted(keys)
        )
