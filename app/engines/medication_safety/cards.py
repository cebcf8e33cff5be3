"""Card text: each finding as advice with its summary, rationale, evidence, confidence and order change.

Text is built from the knowledge base and the recognised drug names only, never from free text in
the record.
"""

from __future__ import annotations

from app.engines.knowledge_schema import CitedRule, DuplicateClass, Interaction, RenalRule
from app.engines.medication_safety.doses import times, with_dose
from app.engines.medication_safety.record import Medication
from app.engines.medication_safety.rules import AllergyMatch, RenalFinding
from cds_hooks.advice import (
    Advice,
    CardSource,
    Evidence,
    Indicator,
    ProposedAction,
    ProposedSuggestion,
)

# Confidence is a fixed function of the evidence, so the same chart always gets the same number.
CONFIDENCE_RENAL = 0.95
CONFIDENCE_UNREAD_DOSE = 0.7
CONFIDENCE_INTERACTION = 0.85
CONFIDENCE_DUPLICATE = 0.8
CONFIDENCE_ALLERGY = 0.9
PENALTY_STALE_LAB = 0.2
PENALTY_CROSS_REACTIVITY = 0.05
PENALTY_UNCONFIRMED_ALLERGY = 0.15


def renal_card(source: CardSource, finding: RenalFinding, egfr_max_age_days: int) -> Advice:
    """An avoid rule cancels the order; a cap rule reduces it, or only warns when its dose is unread."""
    rule, medication, egfr = finding.rule, finding.medication, finding.egfr
    confidence, rationale = CONFIDENCE_RENAL, [rule.rationale]
    order_description = f"{medication.name} {medication.role}"
    if rule.action == "avoid":
        suggestion: ProposedSuggestion | None = _cancel(medication)
    elif finding.daily_mg is None:
        confidence = CONFIDENCE_UNREAD_DOSE
        rationale.append("The order's dose could not be read, so no dose change is proposed.")
        order_description += ", dose not readable"
        suggestion = None
    else:
        order_description += f", {finding.daily_mg:g} mg/day"
        suggestion = _reduce(medication, rule)
    if finding.stale:
        confidence -= PENALTY_STALE_LAB
        rationale.append(f"The most recent eGFR is over {egfr_max_age_days} days old: repeat it.")
    return _advice(
        source,
        rule,
        summary=rule.summary.format(drug=medication.name, egfr=f"{egfr.value:g}", date=egfr.day),
        indicator=rule.indicator,
        rationale=" ".join(rationale),
        confidence=confidence,
        evidence=(
            Evidence(egfr.reference, f"eGFR {egfr.value:g} mL/min/1.73m2 on {egfr.day}"),
            Evidence(medication.reference, order_description),
        ),
        suggestion=suggestion,
    )


def interaction_card(
    source: CardSource, rule: Interaction, medication: Medication, partners: list[Medication]
) -> Advice:
    """The summary names the rule's ``first`` drug first, whichever side is under review."""
    first, second = medication.name, _names(partners)
    if medication.is_(rule.second):
        first, second = second, first
    return _advice(
        source,
        rule,
        summary=rule.summary.format(first=first, second=second),
        indicator=rule.indicator,
        rationale=rule.rationale,
        confidence=CONFIDENCE_INTERACTION,
        evidence=_pair_evidence(medication, partners),
        suggestion=_cancel(medication),
    )


def duplicate_card(
    source: CardSource, rule: DuplicateClass, medication: Medication, partners: list[Medication]
) -> Advice:
    return _advice(
        source,
        rule,
        summary=f"Duplicate therapy: {medication.name} with {_names(partners)} ({rule.label})",
        indicator="warning",
        rationale=(
            f"Taking two {rule.label} at once adds adverse effects without adding benefit. Keep one of them."
        ),
        confidence=CONFIDENCE_DUPLICATE,
        evidence=_pair_evidence(medication, partners),
        suggestion=_cancel(medication),
    )


def allergy_card(source: CardSource, medication: Medication, matches: list[AllergyMatch]) -> Advice:
    """One card per order: the gravest matching allergy decides it, the others are evidence."""
    chosen = min(matches, key=lambda m: (not m.high, not m.confirmed, not m.same_ingredient))
    confidence = CONFIDENCE_ALLERGY
    confidence -= 0 if chosen.same_ingredient else PENALTY_CROSS_REACTIVITY
    confidence -= 0 if chosen.confirmed else PENALTY_UNCONFIRMED_ALLERGY
    how = "is that drug" if chosen.same_ingredient else "belongs to a class that can cross-react"
    certainty = "confirmed" if chosen.confirmed else "unconfirmed"
    criticality = "high-criticality" if chosen.high else "documented"
    return _advice(
        source,
        chosen.rule,
        summary=f"Allergy to {chosen.label} conflicts with the {medication.name} order",
        indicator="critical" if chosen.high else "warning",
        rationale=(
            f"The record holds a {criticality} ({certainty}) allergy to {chosen.label}, and "
            f"{medication.name} {how}. Choose an alternative unless the allergy has been ruled out."
        ),
        confidence=confidence,
        evidence=(
            *(Evidence(m.reference, _allergy_description(m)) for m in matches),
            Evidence(medication.reference, f"{medication.name} {medication.role}"),
        ),
        suggestion=_cancel(medication),
    )


def _advice(
    source: CardSource,
    rule: CitedRule,
    *,
    summary: str,
    indicator: Indicator,
    rationale: str,
    confidence: float,
    evidence: tuple[Evidence, ...],
    suggestion: ProposedSuggestion | None,
) -> Advice:
    return Advice(
        summary=_clip(summary),
        indicator=indicator,
        rationale=rationale,
        confidence=round(confidence, 2),
        source=source,
        evidence=evidence,
        suggestions=(suggestion,) if suggestion is not None else (),
        rule_id=rule.id,
        citation=rule.source,
    )


def _allergy_description(match: AllergyMatch) -> str:
    criticality = ", high criticality" if match.high else ""
    return f"allergy to {match.label}{criticality}"


def _names(medications: list[Medication], shown: int = 3) -> str:
    names = list(dict.fromkeys(m.name for m in medications))
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def _pair_evidence(medication: Medication, partners: list[Medication]) -> tuple[Evidence, ...]:
    return (
        Evidence(medication.reference, f"{medication.name} {medication.role}"),
        *(Evidence(p.reference, f"{p.name} {p.role}") for p in partners),
    )


def _cancel(medication: Medication) -> ProposedSuggestion:
    action = ProposedAction(
        "delete", f"Cancel the {medication.name} draft order", resource_id=medication.reference
    )
    return ProposedSuggestion(f"Cancel {medication.name} order", (action,), recommended=True)


def _reduce(medication: Medication, rule: RenalRule) -> ProposedSuggestion:
    dose, per_day = rule.capped_dose_mg or 0.0, rule.capped_per_day or 1  # set on every cap rule
    updated = with_dose(medication.resource, dose, per_day)
    action = ProposedAction(
        "update", f"Reduce {medication.name} to {dose:g} mg {times(per_day)} daily", resource=updated
    )
    return ProposedSuggestion(
        f"Change to {medication.name} {dose:g} mg {times(per_day)} daily", (action,), recommended=True
    )


def _clip(summary: str, limit: int = 139) -> str:
    """Summaries stay under 140 characters whatever the knowledge base's templates produce."""
    summary = " ".join(summary.split())
    return summary if len(summary) <= limit else summary[: limit - 1].rstrip(" ,;:") + "…"
