"""A held AI draft after a clinician edited and signed it: the final DocumentReference and its
AI-Provenance (reference §1(c), example 2.8): the AI Device is the author, the clinician verifier
and attester. The clinician signs by the sign-off Countersign records, not with a key of their own,
so the Provenance's only ``signature`` is Countersign's, added as it is written
(``fhir_profiles.signature``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime

from fhir.resources.R4B.documentreference import DocumentReference
from fhir.resources.R4B.provenance import Provenance

from fhir_profiles.common import (
    DATA_OPERATION,
    PROFILE_AI_PROVENANCE,
    ai_author,
    ai_reason,
    instant,
    participant,
    validated,
)


@dataclass(frozen=True)
class SignedDraft:
    held_document: dict
    text: str
    signer: str
    signed_at: datetime
    device_ref: str
    suggestion_uuid: str
    request_group_ref: str
    evidence_refs: tuple[str, ...]


def signed_document(draft: SignedDraft) -> dict:
    """The held draft with the clinician's text: final, authored by the AI and the clinician."""
    held = draft.held_document
    attachment = dict(held["content"][0]["attachment"])
    title = "Discharge summary (AI draft, reviewed and signed by a clinician)"
    attachment.update(
        data=base64.b64encode(draft.text.encode()).decode(), title=title, creation=instant(draft.signed_at)
    )
    document = {key: value for key, value in held.items() if key not in ("id", "meta", "content")}
    document |= {
        "resourceType": "DocumentReference",
        "meta": {"security": list(held.get("meta", {}).get("security", []))},
        "status": "current",
        "docStatus": "final",
        "date": instant(draft.signed_at),
        "description": title,
        "author": [{"reference": draft.device_ref}, {"reference": draft.signer}],
        "authenticator": {"reference": draft.signer},
        "content": [{"attachment": attachment}],
    }
    return validated(DocumentReference, document)


def signed_document_provenance(draft: SignedDraft, document_ref: str) -> dict:
    """Who wrote the document (the AI), who checked and signed it (the clinician), from what."""
    signer = {"reference": draft.signer}
    sources = sorted(set(draft.evidence_refs))
    return validated(
        Provenance,
        {
            "resourceType": "Provenance",
            "meta": {"profile": [PROFILE_AI_PROVENANCE]},
            "target": [{"reference": document_ref}],
            "occurredDateTime": instant(draft.signed_at),
            "recorded": instant(draft.signed_at),
            "reason": ai_reason(),
            "activity": {
                "coding": [{"system": DATA_OPERATION, "code": "CREATE", "display": "create"}],
                "text": f"Clinician edited and signed AI draft {draft.suggestion_uuid} (held for review)",
            },
            "agent": [
                ai_author(draft.device_ref),
                {"type": participant("verifier", "Verifier"), "who": signer},
                {"type": participant("attester", "Attester"), "who": signer},
            ],
            "entity": [
                {"role": "derivation", "what": {"reference": draft.request_group_ref}},
                *({"role": "source", "what": {"reference": ref}} for ref in sources),
            ],
        },
    )
