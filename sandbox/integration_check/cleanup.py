"""``--cleanup``: deleting the run's test patients and everything written about them.

What is deleted: every resource the run loaded (its own practitioners included, so no other run
loses them), whatever the patient search of each type finds for the run's patients (the EHR's
draft orders, an accepted change), and every write-back resource the check found. Countersign's
Devices are kept: they describe the model versions, not the patients, are shared by every run and
by production records, and are found again by their identifier (conditional create).

Deletes go one by one, referring resources first (an AuditEvent names its Provenance, which
names the changed order, which names the patient), so that a server enforcing referential
integrity on delete, as HAPI does, accepts each; afterwards ``_id`` searches count what is left.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from sandbox.integration_check.client import FhirClient
from sandbox.integration_check.hints import outcome_hint

DELETE_ORDER = (
    "AuditEvent",
    "Provenance",
    "Task",
    "DocumentReference",
    "GuidanceResponse",
    "RequestGroup",
    "ServiceRequest",
    "MedicationRequest",
    "Condition",
    "Observation",
    "AllergyIntolerance",
    "Encounter",
    "Patient",
    "Practitioner",
)
#: Types whose ``patient`` search finds what was written about a patient, by the EHR or by us.
ABOUT_PATIENT = tuple(t for t in DELETE_ORDER if t not in ("Provenance", "Patient", "Practitioner"))
RANK = {resource_type: float(rank) for rank, resource_type in enumerate(DELETE_ORDER)}
KEPT = frozenset({"Device"})
GONE = frozenset({404, 410})
SCOPE_HINT = " to delete (see --check-scope)"
IDS_PER_SEARCH = 50


@dataclass
class Cleanup:
    planned: int = 0
    deleted: int = 0
    left: int = 0
    failures: list[str] = field(default_factory=list)


def references_to_delete(client: FhirClient, patient_ids: list[str], known: Iterable[dict]) -> list[str]:
    """``Type/id`` of ``known`` resources and of everything the patient searches find, in delete
    order (``known``: what the run loaded and what the check found)."""
    resources = list(known)
    for patient_id in patient_ids:
        patient = f"Patient/{patient_id}"
        for resource_type in ABOUT_PATIENT:
            resources += client.search(resource_type, {"patient": patient}).resources
        resources += client.search("Provenance", {"entity": patient}).resources
    references = {
        f"{r['resourceType']}/{r['id']}" for r in resources if r.get("id") and r["resourceType"] not in KEPT
    }
    return sorted(references, key=_delete_rank)


def delete_all(client: FhirClient, references: list[str]) -> Cleanup:
    """Delete each of ``references``, then count how many are still on the server."""
    cleanup = Cleanup(planned=len(references))
    for reference in references:
        answer = client.request("DELETE", reference)
        if answer.ok or answer.status in GONE:
            cleanup.deleted += 1
        elif len(cleanup.failures) < 3:
            cleanup.failures.append(
                f"{reference.split('/')[0]}: {outcome_hint(answer.status, answer.outcome, SCOPE_HINT)}"
            )
    cleanup.left = _still_there(client, references)
    return cleanup


def _still_there(client: FhirClient, references: list[str]) -> int:
    by_type: dict[str, list[str]] = {}
    for reference in references:
        resource_type, resource_id = reference.split("/", 1)
        by_type.setdefault(resource_type, []).append(resource_id)
    left = 0
    for resource_type, ids in by_type.items():
        for start in range(0, len(ids), IDS_PER_SEARCH):
            chunk = ids[start : start + IDS_PER_SEARCH]
            found = client.search(resource_type, {"_id": ",".join(chunk)})
            left += len(chunk) if found.refusal else len(found.resources)
    return left


def _delete_rank(reference: str) -> tuple[float, str]:
    """Known types in ``DELETE_ORDER``; any other just before the patients it may refer to."""
    resource_type = reference.split("/", 1)[0]
    return (RANK.get(resource_type, RANK["Patient"] - 0.5), reference)
