"""What each outbox message puts on the FHIR server, as Countersign's own deliverer builds it.

The check asks the deliverer rather than keeping its own list, so the expectation follows what
the write-back really sends. Every resource carries a delivery tag unique to it, which is how the
check recognises it among a CMIO's search results; a resource created by a conditional create on
an identifier (our Devices) is looked for by that identifier, as it may have been created by an
earlier run with the same tag.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.writeback.fhir_writer import DeliveryError
from fhir_profiles.common import DELIVERY_TAG_SYSTEM
from sandbox.integration_check.service import RunningCountersign
from sandbox.integration_check.waiting import Message


@dataclass(frozen=True)
class Expected:
    resource_type: str
    #: the delivery tag's code
    key: str
    #: the entry's ``ifNoneExist``: ``_tag=…`` for most, ``identifier=…`` for a shared resource
    condition: str

    @property
    def by_identifier(self) -> bool:
        return not self.condition.startswith("_tag=")


def expected_resources(countersign: RunningCountersign, message: Message) -> list[Expected]:
    """The resources ``message`` writes; empty when it cannot be built (it is dead-lettered then)."""
    worker = countersign.worker
    writer = worker.writers.get(message.target)
    if writer is None:
        return []
    try:
        bundle = worker.deliverer.build(message.kind, message.record_id, writer)
    except DeliveryError:
        return []
    return [_expected(entry) for entry in bundle.entries]


def _expected(entry: dict) -> Expected:
    resource = entry["resource"]
    tags = resource.get("meta", {}).get("tag", [])
    key = next((tag["code"] for tag in tags if tag.get("system") == DELIVERY_TAG_SYSTEM), "")
    return Expected(resource["resourceType"], key, entry["request"].get("ifNoneExist", ""))
