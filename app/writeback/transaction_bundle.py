"""A transaction Bundle of conditional creates: how one record, or a batch of them, is written.

Every entry is a conditional create keyed by a delivery tag unique to its resource, so sending a
Bundle, or any part of it, again never creates a duplicate on the server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

from fhir_profiles.common import DELIVERY_TAG_SYSTEM


@dataclass
class TransactionBundle:
    entries: list[dict] = field(default_factory=list)

    def add(self, resource: dict, key: str, if_none_exist: str | None = None) -> str:
        """Add a conditional create; returns the ``urn:uuid`` other entries reference it by. One
        already in the Bundle on the same condition is that entry: the server would make it one."""
        condition = if_none_exist or f"_tag={DELIVERY_TAG_SYSTEM}|{key}"
        for entry in self.entries:
            if entry["request"]["ifNoneExist"] == condition:
                return entry["fullUrl"]
        full_url = f"urn:uuid:{uuid.uuid4()}"
        meta = resource.setdefault("meta", {})
        meta.setdefault("tag", []).append({"system": DELIVERY_TAG_SYSTEM, "code": key})
        request = {"method": "POST", "url": resource["resourceType"], "ifNoneExist": condition}
        self.entries.append({"fullUrl": full_url, "resource": resource, "request": request})
        return full_url

    def as_fhir(self) -> dict:
        return {"resourceType": "Bundle", "type": "transaction", "entry": self.entries}

    def holds(self, resource_type: str) -> bool:
        return any(entry["resource"]["resourceType"] == resource_type for entry in self.entries)

    def split(self, resource_type: str) -> tuple[TransactionBundle, TransactionBundle]:
        """The entries that neither are a ``resource_type`` nor point at one, directly or not, and
        the others: the first part can be written without the second."""
        by_url = {entry["fullUrl"]: entry for entry in self.entries}
        marked = {url for url, entry in by_url.items() if entry["resource"]["resourceType"] == resource_type}
        later = {entry["fullUrl"] for entry in self.entries if _needed(entry, by_url) & marked}
        return (
            TransactionBundle([entry for entry in self.entries if entry["fullUrl"] not in later]),
            TransactionBundle([entry for entry in self.entries if entry["fullUrl"] in later]),
        )

    def redirected(self, aliases: dict[str, str]) -> TransactionBundle:
        """A copy whose references to a key of ``aliases`` point at its value instead."""
        return TransactionBundle(
            [{**entry, "resource": _redirect(entry["resource"], aliases)} for entry in self.entries]
        )

    @classmethod
    def combine(cls, bundles: list[TransactionBundle]) -> TransactionBundle:
        """One Bundle for many messages: a conditional create repeated across them (the model's
        Device, a card set's RequestGroup) is kept once and references to the copies redirected."""
        kept: dict[str, str] = {}
        aliases: dict[str, str] = {}
        entries: list[dict] = []
        for entry in (entry for bundle in bundles for entry in bundle.entries):
            condition = entry["request"]["ifNoneExist"]
            if condition in kept:
                aliases[entry["fullUrl"]] = kept[condition]
                continue
            kept[condition] = entry["fullUrl"]
            entries.append(entry)
        return cls(entries).redirected(aliases)

    def parts(self) -> list[TransactionBundle]:
        """Each resource with the entries it points at, to be sent alone: when a server refuses one
        resource of a record, the rest of the record can still land."""
        by_url = {entry["fullUrl"]: entry for entry in self.entries}
        return [
            TransactionBundle([by_url[url] for url in by_url if url in _needed(entry, by_url)])
            for entry in self.entries
        ]


def _needed(entry: dict, by_url: dict[str, dict]) -> set[str]:
    """The entry's fullUrl and those of every entry it references, directly or not."""
    needed, waiting = set(), [entry["fullUrl"]]
    while waiting:
        url = waiting.pop()
        if url not in needed:
            needed.add(url)
            pointed = (ref["reference"] for ref in references(by_url[url]["resource"]))
            waiting.extend(ref for ref in pointed if ref in by_url)
    return needed


def references(value: object) -> Iterator[dict]:
    """Every Reference object with a ``reference`` string in a resource, contained ones included."""
    if isinstance(value, list):
        for item in value:
            yield from references(item)
    elif isinstance(value, dict):
        if isinstance(value.get("reference"), str):
            yield value
        for key, item in value.items():
            if key != "reference":
                yield from references(item)


def _redirect(value: object, aliases: dict[str, str]) -> object:
    if isinstance(value, list):
        return [_redirect(item, aliases) for item in value]
    if isinstance(value, dict):
        return {
            key: aliases.get(item, item) if key == "reference" else _redirect(item, aliases)
            for key, item in value.items()
        }
    return value
