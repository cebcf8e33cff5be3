"""The EHR's order list and the draft → signed life of a medication order."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sandbox.ehr.synthetic.catalogue import DRUGS
from sandbox.ehr.synthetic.resources import medication_request


@dataclass(frozen=True)
class Orderable:
    label: str
    drug: str
    dose: float
    per_day: int


ORDERABLES = {
    "gabapentin-300-tid": Orderable("Gabapentin 300 mg three times daily", "gabapentin", 300, 3),
    "ibuprofen-400-tid": Orderable("Ibuprofen 400 mg three times daily", "ibuprofen", 400, 3),
    "metformin-1000-bid": Orderable("Metformin 1,000 mg twice daily", "metformin", 1000, 2),
    "naproxen-500-bid": Orderable("Naproxen 500 mg twice daily", "naproxen", 500, 2),
    "amoxicillin-500-tid": Orderable("Amoxicillin 500 mg three times daily", "amoxicillin", 500, 3),
    "clarithromycin-500-bid": Orderable("Clarithromycin 500 mg twice daily", "clarithromycin", 500, 2),
    "pantoprazole-40-daily": Orderable("Pantoprazole 40 mg once daily", "pantoprazole", 40, 1),
    "spironolactone-25-daily": Orderable("Spironolactone 25 mg once daily", "spironolactone", 25, 1),
    "atorvastatin-20-daily": Orderable("Atorvastatin 20 mg once daily", "atorvastatin", 20, 1),
    "nitrofurantoin-100-bid": Orderable("Nitrofurantoin 100 mg twice daily", "nitrofurantoin", 100, 2),
}


def draft_order(patient_id: str, key: str, requester: str) -> dict:
    """A new draft MedicationRequest with an id of its own (``key`` must be in ORDERABLES)."""
    orderable = ORDERABLES[key]
    drug = DRUGS[orderable.drug]
    return medication_request(
        patient_id,
        f"draft-{uuid.uuid4().hex[:16]}",
        drug.rxnorm,
        drug.ingredient,
        drug.product,
        orderable.dose,
        orderable.per_day,
        datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        unit=drug.unit,
        status="draft",
        requester=requester,
    )


def signed(order: dict) -> dict:
    """The order as signed: active, everything else (an accepted AI change included) kept."""
    meta = {k: v for k, v in (order.get("meta") or {}).items() if k not in ("versionId", "lastUpdated")}
    return {**order, "meta": meta, "status": "active"}


def draft_orders_bundle(drafts: list[dict]) -> dict:
    """``context.draftOrders``: a collection Bundle of the orders being written (spec §7)."""
    return {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": d} for d in drafts]}
