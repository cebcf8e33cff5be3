"""References to the EHR's resources that its FHIR server may not hold.

CDS Hooks does not promise that what a hook names exists on the FHIR server: draft orders of
``order-sign`` were never stored, ``context.userId`` may name a user the server has no resource
for, an encounter may live elsewhere. A server that enforces referential integrity (HAPI FHIR by
default) refuses a whole transaction for one such reference. So, before a Bundle is sent, every
literal reference to the server's own resources is checked (cached), and one that does not
resolve becomes a logical reference: ``type`` + ``identifier`` (the URL the EHR named it by) +
``display``. Nothing is dropped and no record is dead-lettered for an unresolvable reference.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from app.writeback.fhir_writer import FhirWriter
from app.writeback.transaction_bundle import references
from fhir_profiles.common import URI

ID = r"[A-Za-z0-9\-.]{1,64}"
LITERAL = re.compile(rf"^(?P<type>[A-Z][A-Za-z]+)/(?P<id>{ID})(?:/_history/{ID})?$")
TYPE_IN_URL = re.compile(rf"(?:^|/)(?P<type>[A-Z][A-Za-z]+)/(?P<id>{ID})(?:/_history/{ID})?$")
FOUND_SECONDS = 3600.0
MISSING_SECONDS = 60.0
IDS_PER_QUERY = 50


@dataclass
class KnownReferences:
    """What one server holds, as far as we have asked: found ids for an hour (resources are rarely
    deleted), missing ones for a minute (the EHR may store a draft order once it is signed)."""

    writer: FhirWriter
    clock: Callable[[], float] = time.monotonic
    _answers: dict[tuple[str, str], tuple[bool, float]] = field(default_factory=dict)

    def localize(self, resources: list[dict]) -> None:
        """Turn every literal reference that does not resolve on the server into a logical one."""
        # one entry per object: builders may share one Reference object between fields
        refs = list({id(ref): ref for resource in resources for ref in references(resource)}.values())
        named = {id(ref): self._on_server(ref["reference"]) for ref in refs}
        present = self._present({key for key in named.values() if key})
        for ref in refs:
            reference, key = ref["reference"], named[id(ref)]
            if key is not None and key not in present:
                _make_logical(ref, f"{self.writer.server.key}/{key[0]}/{key[1]}")
            elif key is None and reference.startswith(("http://", "https://")):
                _make_logical(ref, reference)  # another server's: not followable from this one

    def _on_server(self, reference: str) -> tuple[str, str] | None:
        """(type, id) of a reference to this server's resources; None for anything else."""
        match = LITERAL.match(reference.removeprefix(self.writer.server.key + "/"))
        return (match["type"], match["id"]) if match else None

    def _present(self, wanted: set[tuple[str, str]]) -> set[tuple[str, str]]:
        now = self.clock()
        unknown: dict[str, list[str]] = {}
        for kind, ident in sorted(wanted):
            answer = self._answers.get((kind, ident))
            if answer is None or answer[1] <= now:
                unknown.setdefault(kind, []).append(ident)
        for kind, idents in unknown.items():
            for start in range(0, len(idents), IDS_PER_QUERY):
                chunk = idents[start : start + IDS_PER_QUERY]
                found = self._search_ids(kind, chunk)
                for ident in chunk:
                    lasts = FOUND_SECONDS if ident in found else MISSING_SECONDS
                    self._answers[(kind, ident)] = (ident in found, now + lasts)
        return {key for key in wanted if self._answers[key][0]}

    def _search_ids(self, kind: str, idents: list[str]) -> set[str]:
        params = {"_id": ",".join(idents), "_elements": "id", "_count": str(len(idents))}
        bundle = self.writer.search(kind, params)
        return {e["resource"]["id"] for e in bundle.get("entry", []) if e.get("resource", {}).get("id")}


def _make_logical(ref: dict, url: str) -> None:
    """Keep what the EHR called it (its URL) as the identifier; FHIR allows a Reference without a
    literal target, and a reader sees why the link is not followable."""
    del ref["reference"]
    kind = TYPE_IN_URL.search(url)
    if kind:
        ref["type"] = kind["type"]
    ref["identifier"] = {"system": URI, "value": url}
    ref.setdefault("display", "not found on the FHIR server when written")
