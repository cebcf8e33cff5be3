"""Medication-safety engine (offline default): renal limits, interactions, duplicates, allergies.

It reviews the draft orders of an order-select/order-sign call against the patient's latest eGFR,
active medications and documented allergies. The clinical knowledge is data
(``knowledge/medication_safety.yaml``), each rule with its source; this module only applies it.
Resources are read as plain JSON, each prefetched list once, so thousands of observations cost
milliseconds. Card text is built from the knowledge base only, never from free text in the record.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from app.engines.base import PatientData
from app.engines.fhir_json import (
    DrugNames,
    LabResult,
    aware,
    codings,
    concept_text,
    lab_results,
    medication_concept,
    medication_index,
    reference,
    status_code,
    word_pattern,
)
from app.engines.knowledge_schema import (
    AllergyGroup,
    CitedRule,
    DrugSelector,
    DuplicateClass,
    Interaction,
    MedicationKnowledge,
    RenalRule,
    load_medication_knowledge,
)
from cds_hooks.advice import (
    Advice,
    AdviceSet,
    CardSource,
    Evidence,
    Indicator,
    ProposedAction,
    ProposedSuggestion,
)

__all__ = ["MedicationSafetyEngine", "daily_dose_mg", "latest_egfr", "load_medication_knowledge"]

EGFR_LOINC = frozenset({"33914-3", "48642-3", "48643-1", "62238-1", "98979-8", "69405-9"})
SEVERITY = {"critical": 0, "warning": 1, "info": 2}
Rule = TypeVar("Rule", Interaction, DuplicateClass)

# Confidence is a fixed function of the evidence, so the same chart always gets the same number.
CONFIDENCE_RENAL = 0.95
CONFIDENCE_UNREAD_DOSE = 0.7
CONFIDENCE_INTERACTION = 0.85
CONFIDENCE_DUPLICATE = 0.8
CONFIDENCE_ALLERGY = 0.9
PENALTY_STALE_LAB = 0.2
PENALTY_CROSS_REACTIVITY = 0.05
PENALTY_UNCONFIRMED_ALLERGY = 0.15


@dataclass(frozen=True)
class Medication:
    """A MedicationRequest recognised as one or more ingredients of the knowledge base."""

    reference: str
    ingredients: tuple[str, ...]
    classes: frozenset[str]
    resource: dict
    is_draft: bool

    @property
    def name(self) -> str:
        return "/".join(self.ingredients)

    @property
    def role(self) -> str:
        return "draft order" if self.is_draft else "active medication"

    def is_(self, selector: DrugSelector) -> bool:
        return selector.matches(self.ingredients, self.classes)


@dataclass(frozen=True)
class AllergyMatch:
    """A current allergy that conflicts with an order, and the rule that says so."""

    reference: str
    rule: CitedRule
    label: str
    high: bool
    confirmed: bool
    same_ingredient: bool


def _utc_now() -> datetime:
    return datetime.now(UTC)


class MedicationSafetyEngine:
    def __init__(
        self,
        source: CardSource,
        knowledge: MedicationKnowledge,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        self.source = source
        self.knowledge = knowledge
        self.clock = clock
        self._stale_after = timedelta(days=knowledge.egfr_max_age_days)
        self._drug_names = DrugNames.of({name: drug.rxnorm for name, drug in knowledge.drugs.items()})
        self._group_words = {group.id: word_pattern(group.names) for group in knowledge.allergy_groups}

    def suggest(self, data: PatientData) -> AdviceSet:
        """Advice for the orders under review; ``inputs_used`` lists what the decision rested on."""
        medications = _medication_index(data)
        drafts = [r for r in data.draft_orders if r.get("resourceType") == "MedicationRequest"]
        under_review = {
            reference(r) for r in drafts if not data.selections or reference(r) in data.selections
        }
        recognised_drafts = self._recognise_all(drafts, medications, is_draft=True)
        reviewed = [m for m in recognised_drafts if m.reference in under_review]
        if not reviewed:
            return AdviceSet(inputs_used=tuple(sorted(under_review)))

        active = [r for r in data.of_type("MedicationRequest") if r.get("status") == "active"]
        others = [*recognised_drafts, *self._recognise_all(active, medications, is_draft=False)]
        allergies = [a for a in data.of_type("AllergyIntolerance") if _is_current_allergy(a)]
        used = {reference(r) for r in (*drafts, *active, *allergies)}  # drafts include those under review
        egfr = self._egfr_if_needed(reviewed, data)
        if egfr is not None:
            used.add(egfr.reference)

        advice = [
            *self._renal(reviewed, egfr),
            *self._interactions(reviewed, others),
            *self._duplicates(reviewed, others),
            *self._allergies(reviewed, allergies),
        ]
        advice.sort(key=lambda item: SEVERITY[item.indicator])
        return AdviceSet(tuple(advice), tuple(sorted(used)))

    # Recognition

    def _recognise_all(
        self, requests: list[dict], medications: dict[str, dict], *, is_draft: bool
    ) -> list[Medication]:
        recognised = (self._recognise(r, medications, is_draft) for r in requests)
        return [m for m in recognised if m is not None]

    def _recognise(self, request: dict, medications: dict[str, dict], is_draft: bool) -> Medication | None:
        concept = medication_concept(request, medications)
        if concept is None:
            return None
        ingredients = self._drug_names.in_concept(concept)
        if not ingredients:
            return None
        classes = frozenset(c for name in ingredients for c in self.knowledge.drugs[name].classes)
        return Medication(reference(request), ingredients, classes, request, is_draft)

    # Renal dose limits

    def _egfr_if_needed(self, reviewed: list[Medication], data: PatientData) -> LabResult | None:
        """Only read the labs when a renal rule could apply: the eGFR is then an input, else not."""
        if any(m.is_(rule) for m in reviewed for rule in self.knowledge.renal_rules):
            return latest_egfr(data.of_type("Observation"))
        return None

    def _renal(self, reviewed: list[Medication], egfr: LabResult | None) -> Iterator[Advice]:
        if egfr is None:
            return
        for medication in reviewed:
            rule = next(
                (
                    r
                    for r in self.knowledge.renal_rules
                    if medication.is_(r) and r.at_least <= egfr.value < r.below
                ),
                None,
            )
            if rule is not None:
                yield from self._renal_advice(rule, medication, egfr)

    def _renal_advice(self, rule: RenalRule, medication: Medication, egfr: LabResult) -> Iterator[Advice]:
        stale = aware(self.clock()) - egfr.when > self._stale_after
        confidence, rationale = CONFIDENCE_RENAL, [rule.rationale]
        order_description = f"{medication.name} {medication.role}"
        if rule.action == "avoid":
            suggestion = _cancel(medication)
        else:
            daily = daily_dose_mg(medication.resource)
            if daily is not None and daily <= rule.max_daily_mg:
                return
            if daily is None:
                confidence = CONFIDENCE_UNREAD_DOSE
                rationale.append("The order's dose could not be read, so no dose change is proposed.")
                order_description += ", dose not readable"
                suggestion = None
            else:
                order_description += f", {daily:g} mg/day"
                suggestion = _reduce(medication, rule)
        if stale:
            confidence -= PENALTY_STALE_LAB
            rationale.append(
                f"The most recent eGFR is over {self.knowledge.egfr_max_age_days} days old: repeat it."
            )
        yield self._advice(
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

    # Interacting pairs and duplicate therapy

    def _interactions(self, reviewed: list[Medication], others: list[Medication]) -> Iterator[Advice]:
        for rule, medication, partners in _pairs(reviewed, others, self.knowledge.interactions, _interacts):
            first, second = medication.name, _names(partners)
            if medication.is_(rule.second):
                first, second = second, first
            yield self._advice(
                rule,
                summary=rule.summary.format(first=first, second=second),
                indicator=rule.indicator,
                rationale=rule.rationale,
                confidence=CONFIDENCE_INTERACTION,
                evidence=_pair_evidence(medication, partners),
                suggestion=_cancel(medication),
            )

    def _duplicates(self, reviewed: list[Medication], others: list[Medication]) -> Iterator[Advice]:
        for rule, medication, partners in _pairs(
            reviewed, others, self.knowledge.duplicate_classes, _same_class
        ):
            yield self._advice(
                rule,
                summary=f"Duplicate therapy: {medication.name} with {_names(partners)} ({rule.label})",
                indicator="warning",
                rationale=(
                    f"Taking two {rule.label} at once adds adverse effects without adding benefit. "
                    "Keep one of them."
                ),
                confidence=CONFIDENCE_DUPLICATE,
                evidence=_pair_evidence(medication, partners),
                suggestion=_cancel(medication),
            )

    # Allergies

    def _allergies(self, reviewed: list[Medication], allergies: list[dict]) -> Iterator[Advice]:
        for medication in reviewed:
            matches = [m for m in (self._allergy_match(a, medication) for a in allergies) if m is not None]
            if matches:
                yield self._allergy_advice(medication, matches)

    def _allergy_match(self, allergy: dict, medication: Medication) -> AllergyMatch | None:
        """The very ingredient first; else a class the allergy stands for (cross-reactivity)."""
        concept = allergy.get("code") or {}
        same = [name for name in self._drug_names.in_concept(concept) if name in medication.ingredients]
        if same:
            rule: CitedRule = self.knowledge.ingredient_allergy
            label = "/".join(same)
        else:
            group = next(
                (g for g in self.knowledge.allergy_groups if self._group_conflicts(g, concept, medication)),
                None,
            )
            if group is None:
                return None
            rule, label = group, group.label
        return AllergyMatch(
            reference(allergy),
            rule,
            label,
            high=allergy.get("criticality") == "high",
            confirmed=status_code(allergy.get("verificationStatus")) == "confirmed",
            same_ingredient=bool(same),
        )

    def _group_conflicts(self, group: AllergyGroup, concept: dict, medication: Medication) -> bool:
        if medication.classes.isdisjoint(group.conflicts_with_classes):
            return False
        codes = {f"{c.get('system')}|{c.get('code')}" for c in codings(concept)}
        return not codes.isdisjoint(group.codes) or bool(
            self._group_words[group.id].search(concept_text(concept))
        )

    def _allergy_advice(self, medication: Medication, matches: list[AllergyMatch]) -> Advice:
        """One card per order: the gravest matching allergy decides it, the others are evidence."""
        chosen = min(matches, key=lambda m: (not m.high, not m.confirmed, not m.same_ingredient))
        confidence = CONFIDENCE_ALLERGY
        confidence -= 0 if chosen.same_ingredient else PENALTY_CROSS_REACTIVITY
        confidence -= 0 if chosen.confirmed else PENALTY_UNCONFIRMED_ALLERGY
        how = "is that drug" if chosen.same_ingredient else "belongs to a class that can cross-react"
        certainty = "confirmed" if chosen.confirmed else "unconfirmed"
        criticality = "high-criticality" if chosen.high else "documented"
        return self._advice(
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
        self,
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
            source=self.source,
            evidence=evidence,
            suggestions=(suggestion,) if suggestion is not None else (),
            rule_id=rule.id,
            citation=rule.source,
        )


def _allergy_description(match: AllergyMatch) -> str:
    criticality = ", high criticality" if match.high else ""
    return f"allergy to {match.label}{criticality}"


# Pairs: one card per (rule, order under review), naming every partner


def _pairs(
    reviewed: list[Medication],
    others: list[Medication],
    rules: Iterable[Rule],
    related: Callable[[Rule, Medication, Medication, set[str]], bool],
) -> Iterator[tuple[Rule, Medication, list[Medication]]]:
    """Each rule's partners of each reviewed order; a pair of two new orders is reported once."""
    reviewed_refs = {m.reference for m in reviewed}
    candidates = _unique_byreference(others)
    for rule in rules:
        reported: set[tuple[str, str]] = set()
        for medication in reviewed:
            partners = [
                other
                for other in candidates
                if other.reference != medication.reference
                and (other.reference, medication.reference) not in reported
                and related(rule, medication, other, reviewed_refs)
            ]
            if partners:
                reported |= {(medication.reference, other.reference) for other in partners}
                yield rule, medication, partners


def _interacts(rule: Interaction, medication: Medication, other: Medication, reviewed: set[str]) -> bool:
    """When both are under review the card goes on the ``second`` side: that is the one to stop."""
    if medication.is_(rule.second) and other.is_(rule.first):
        return True
    return medication.is_(rule.first) and other.is_(rule.second) and other.reference not in reviewed


def _same_class(rule: DuplicateClass, medication: Medication, other: Medication, _: set[str]) -> bool:
    return rule.drug_class in medication.classes and rule.drug_class in other.classes


def _unique_byreference(medications: list[Medication]) -> list[Medication]:
    """An order both in the draft bundle and in the prefetch counts once, as the draft."""
    first_seen: dict[str, Medication] = {}
    for medication in medications:
        first_seen.setdefault(medication.reference, medication)
    return list(first_seen.values())


def _names(medications: list[Medication], shown: int = 3) -> str:
    names = list(dict.fromkeys(m.name for m in medications))
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def _pair_evidence(medication: Medication, partners: list[Medication]) -> tuple[Evidence, ...]:
    return (
        Evidence(medication.reference, f"{medication.name} {medication.role}"),
        *(Evidence(p.reference, f"{p.name} {p.role}") for p in partners),
    )


# Suggestions


def _cancel(medication: Medication) -> ProposedSuggestion:
    action = ProposedAction(
        "delete", f"Cancel the {medication.name} draft order", resource_id=medication.reference
    )
    return ProposedSuggestion(f"Cancel {medication.name} order", (action,), recommended=True)


def _reduce(medication: Medication, rule: RenalRule) -> ProposedSuggestion:
    dose, per_day = rule.capped_dose_mg or 0.0, rule.capped_per_day or 1  # set on every cap rule
    updated = _with_dose(medication.resource, dose, per_day)
    action = ProposedAction(
        "update", f"Reduce {medication.name} to {dose:g} mg {_times(per_day)} daily", resource=updated
    )
    return ProposedSuggestion(
        f"Change to {medication.name} {dose:g} mg {_times(per_day)} daily", (action,), recommended=True
    )


# Reading the record


def _medication_index(data: PatientData) -> dict[str, dict]:
    """Medication resources a ``medicationReference`` may point at, by "Medication/id"."""
    return medication_index((*data.of_type("Medication"), *data.draft_orders))


def latest_egfr(observations: list[dict]) -> LabResult | None:
    """The most recent valid eGFR in mL/min(/1.73m2); a result in any other unit is not used."""
    results = lab_results(observations, EGFR_LOINC, ("ml/min",))
    return results[-1] if results else None


def _is_current_allergy(allergy: dict) -> bool:
    clinical = status_code(allergy.get("clinicalStatus"))
    verification = status_code(allergy.get("verificationStatus"))
    return clinical in (None, "active") and verification not in ("refuted", "entered-in-error")


# Doses

PERIODS_PER_DAY = {"s": 86400, "min": 1440, "h": 24, "d": 1, "wk": 1 / 7, "mo": 1 / 30, "a": 1 / 365}
TIMES_PER_DAY = {
    "QD": 1,
    "AM": 1,
    "PM": 1,
    "BID": 2,
    "TID": 3,
    "QID": 4,
    "Q4H": 6,
    "Q6H": 4,
    "Q8H": 3,
    "QOD": 0.5,
}
MG_PER_UNIT = {"mg": 1, "g": 1000, "mcg": 0.001, "ug": 0.001}


def daily_dose_mg(order: dict) -> float | None:
    """Most mg a day the order allows, or None when any of its dosages cannot be read.

    Dosages with the same ``sequence`` run together (summed); sequential ones do not (the largest wins).
    """
    per_sequence: dict[object, float] = {}
    for dosage in order.get("dosageInstruction") or ():
        daily = _dosage_mg_per_day(dosage) if isinstance(dosage, dict) else None
        if daily is None:
            return None
        sequence = dosage.get("sequence")
        per_sequence[sequence] = per_sequence.get(sequence, 0.0) + daily
    return max(per_sequence.values(), default=None)


def _dosage_mg_per_day(dosage: dict) -> float | None:
    times = _times_per_day(dosage.get("timing") or {})
    doses = [_dose_mg(d) for d in dosage.get("doseAndRate") or () if isinstance(d, dict)]
    dose = next((d for d in doses if d is not None), None)
    return None if times is None or dose is None else dose * times


def _dose_mg(dose_and_rate: dict) -> float | None:
    quantity = dose_and_rate.get("doseQuantity") or (dose_and_rate.get("doseRange") or {}).get("high") or {}
    value = quantity.get("value")
    factor = MG_PER_UNIT.get(str(quantity.get("code") or quantity.get("unit") or ""))
    if isinstance(value, bool) or not isinstance(value, int | float) or factor is None:
        return None
    return float(value) * factor


def _times_per_day(timing: dict) -> float | None:
    repeat = timing.get("repeat") or {}
    if repeat.get("periodUnit") in PERIODS_PER_DAY:
        frequency = repeat.get("frequencyMax") or repeat.get("frequency", 1)
        period = repeat.get("period", 1)
        if _positive(frequency) and _positive(period):
            return frequency * PERIODS_PER_DAY[repeat["periodUnit"]] / period
        return None
    return next(
        (TIMES_PER_DAY[c["code"]] for c in codings(timing.get("code")) if c.get("code") in TIMES_PER_DAY),
        None,
    )


def _positive(number: object) -> bool:
    return isinstance(number, int | float) and not isinstance(number, bool) and number > 0


def _with_dose(order: dict, dose_mg: float, per_day: int) -> dict:
    """The whole order with one rewritten dosage (CDS Hooks updates carry the whole resource).

    Route and other fields of the first dosage are kept; timing, dose and text are replaced.
    """
    updated = copy.deepcopy(order)
    first = next((d for d in updated.get("dosageInstruction") or () if isinstance(d, dict)), {})
    replaced = {
        "text",
        "patientInstruction",
        "timing",
        "doseAndRate",
        "maxDosePerPeriod",
        "maxDosePerAdministration",
    }
    dosage = {key: value for key, value in first.items() if key not in replaced}
    dosage |= {
        "text": f"{dose_mg:g} mg {_times(per_day)} daily",
        "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [
            {
                "doseQuantity": {
                    "value": int(dose_mg) if float(dose_mg).is_integer() else dose_mg,
                    "unit": "mg",
                    "system": "http://unitsofmeasure.org",
                    "code": "mg",
                }
            }
        ],
    }
    updated["dosageInstruction"] = [dosage]
    return updated


def _times(per_day: int) -> str:
    return {1: "once", 2: "twice", 3: "three times", 4: "four times"}.get(per_day, f"{per_day} times")


def _clip(summary: str, limit: int = 139) -> str:
    """Summaries stay under 140 characters whatever the knowledge base's templates produce."""
    summary = " ".join(summary.split())
    return summary if len(summary) <= limit else summary[: limit - 1].rstrip(" ,;:") + "…"
