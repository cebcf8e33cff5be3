"""Writing a Bundle to the EHR, every Provenance in it signed on the way (docs/DECISIONS.md,
"Signed Provenance"). Every transaction the worker sends goes through ``Sender.send``.

A Provenance is signed as the server will hold it, so its references must already be the server's
own (``Device/17``), not the ``urn:uuid:`` placeholders of the Bundle that the server rewrites. So
a Bundle holding Provenances is written in two transactions: first everything they point at, and
the Device that signs them; then, with the ids the server answered, the Provenances, signed, and
whatever points at them. Both are conditional creates: a retry after the first landed creates
nothing twice and is answered the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from app.db import utcnow
from app.security.signing_key import ProvenanceKey
from app.writeback.delivery import add_service_device
from app.writeback.fhir_writer import DeliveryError, FhirWriter
from app.writeback.references import TYPE_IN_URL
from app.writeback.transaction_bundle import TransactionBundle, references
from fhir_profiles.device import GOVERNANCE_SERVICE
from fhir_profiles.signature import signed

PROVENANCE = "Provenance"


@dataclass(frozen=True)
class Sender:
    key: ProvenanceKey

    def send(self, writer: FhirWriter, bundle: TransactionBundle) -> None:
        if not bundle.holds(PROVENANCE):
            writer.transaction(bundle.as_fhir())
            return
        bundle = TransactionBundle(list(bundle.entries))  # the signer's Device joins a copy
        signer = add_service_device(bundle, GOVERNANCE_SERVICE)
        first, second = bundle.split(PROVENANCE)
        located = _locations(first, writer.transaction(first.as_fhir()))
        writer.transaction(self._signed(second.redirected(located), located[signer]).as_fhir())

    def _signed(self, bundle: TransactionBundle, signer_ref: str) -> TransactionBundle:
        when = utcnow()
        return TransactionBundle(
            [
                {**entry, "resource": self._sign(entry["resource"], signer_ref, when)}
                if entry["resource"]["resourceType"] == PROVENANCE
                else entry
                for entry in bundle.entries
            ]
        )

    def _sign(self, provenance: dict, signer_ref: str, when: datetime) -> dict:
        """What the server would still rewrite cannot be signed: it would not verify once stored."""
        if any(ref["reference"].startswith("urn:") for ref in references(provenance)):
            raise DeliveryError("a Provenance points at a resource written after it", permanent=True)
        return signed(provenance, self.key.key, self.key.kid, signer_ref, when)


def _locations(bundle: TransactionBundle, response: dict) -> dict[str, str]:
    """Each entry's ``Type/id`` on the server, from its transaction-response (entries in order)."""
    answers = response.get("entry", [])
    if len(answers) != len(bundle.entries):
        raise DeliveryError("the server's transaction-response does not answer every entry", permanent=True)
    located = {}
    for entry, answer in zip(bundle.entries, answers, strict=True):
        match = TYPE_IN_URL.search(answer.get("response", {}).get("location", ""))
        if match is None:
            raise DeliveryError("the server did not say where it wrote a resource", permanent=True)
        located[entry["fullUrl"]] = f"{match['type']}/{match['id']}"
    return located
