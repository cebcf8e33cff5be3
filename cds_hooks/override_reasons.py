"""Override reasons offered on every card: CDS Hooks non-adherence reason codes (reference §4.3, §1(d)).

A short clinical subset keeps the EHR's override dialog usable; each code is the spec's own.
"""

from __future__ import annotations

NON_ADHERENCE = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"

OVERRIDE_REASONS: tuple[dict[str, str], ...] = tuple(
    {"system": NON_ADHERENCE, "code": code, "display": display}
    for code, display in (
        ("patient-ineligible", "Patient is not eligible for the recommended action"),
        ("risk-benefit-ratio", "Recipient assessment of risk/benefit ratio"),
        ("patient-contraindication", "Patient-specific contraindication"),
        ("does-not-align-latest-evidence", "Does not align with the latest evidence"),
        ("recipient-does-not-trust", "Recipient does not agree with or trust the recommended action"),
        ("need-more-info", "Recipient needs more information"),
    )
)
