"""Medication-safety engine (offline default): renal limits, interactions, duplicates, allergies.

It reviews the draft orders of an order-select/order-sign call against the patient's latest eGFR,
active medications and documented allergies. The clinical knowledge is data
(``knowledge/medication_safety.yaml``), each rule with its source; this module only applies it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property

from app.engines.base import PatientData
from app.engines.knowledge_schema import (
    Allergen,
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
    ProposedAction,
    ProposedSuggestion,
)

__all__ = ["MedicationSafetyEngine", "load_medication_knowledge"]

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
EGFR_LOINC = frozenset({"33914-3", "48642-3", "48643-1", "62238-1", "98979-8", "69405-9"})
VOID_STATUSES = frozenset({"entered-in-error", "cancelled"})
STALE_AFTER = timedelta(days=365)
SEVERITY = {"critical": 0, "warning": 1, "info": 2}
HOURS_PER = {"h": 1, "d": 24, "wk": 168}


@dataclass(frozen=True)
class Medication:
    """A MedicationRequest recognised as one ingredient of the knowledge base."""

    reference: str
    ingredient: str
    classes: tuple[str, ...]
    resource: dict

    @property
    def name(self) -> str:
        return self.ingredient

    def is_(self, selector: DrugSelector) -> bool:
        return selector.matches(self.ingredient, self.classes)


@dataclass(frozen=True)
class Egfr:
    reference: str
    value: float
    when: date


class MedicationSafetyEngine:
    def __init__(
        self,
        source: CardSource,
        knowledge: MedicationKnowledge,
        today: Callable[[], date] = date.today,
    ) -> None:
        self.source = source
        self.knowledge = knowledge
        self.today = today

    @cached_property
    def _ingredient_by_code(self) -> dict[str, str]:
        return {code: name for name, drug in self.knowledge.drugs.items() for code in drug.rxnorm}

    def suggest(self, data: PatientData) -> AdviceSet:
        drafts = [m for m in map(self._recognise, data.draft_orders) if m is not None]
        reviewed = [m for m in drafts if not data.selections or m.reference in data.selections]
        if not reviewed:
            return AdviceSet(inputs_used=tuple(sorted(self._draft_refs(data))))
        active = [m for m in map(self._recognise, data.of_type("MedicationRequest")) if m is not None]
        others = [*drafts, *(m for m in active if m.resource.get("status") == "active")]
        egfr = latest_egfr(data.of_type("Observation"))
        allergies = [a for a in data.of_type("AllergyIntolerance") if _is_current_allergy(a)]
        advice = [
            *self._renal(reviewed, egfr),
            *_unique(self._interactions(reviewed, others)),
            *_unique(self._duplicates(reviewed, others)),
            *self._allergies(reviewed, allergies),
        ]
        advice.sort(key=lambda item: SEVERITY[item.indicator])
        used = self._draft_refs(data) | {m.reference for m in others}
        used |= {f"AllergyIntolerance/{a.get('id')}" for a in allergies}
        if egfr is not None:
            used.add(egfr.reference)
        return AdviceSet(tuple(advice), tuple(sorted(used)))

    @staticmethod
    def _draft_refs(data: PatientData) -> set[str]:
        return {_reference(r) for r in data.draft_orders if r.get("resourceType") == "MedicationRequest"}

    def _recognise(self, resource: dict) -> Medication | None:
        if resource.get("resourceType") != "MedicationRequest":
            return None
        concept = resource.get("medicationCodeableConcept") or {}
        ingredient = self._by_code(concept) or self._by_name(concept)
        if ingredient is None:
            return None
        classes = self.knowledge.drugs[ingredient].classes
        return Medication(_reference(resource), ingredient, classes, resource)

    def _by_code(self, concept: dict) -> str | None:
        for coding in concept.get("coding") or ():
            if coding.get("system") == RXNORM and coding.get("code") in self._ingredient_by_code:
                return self._ingredient_by_code[coding["code"]]
        return None

    def _by_name(self, concept: dict) -> str | None:
        texts = [concept.get("text") or ""] + [c.get("display") or "" for c in concept.get("coding") or ()]
        words = " ".join(texts).lower()
        return next((name for name in self.knowledge.drugs if name in words), None)

    def _renal(self, reviewed: list[Medication], egfr: Egfr | None) -> Iterable[Advice]:
        if egfr is None:
            return
        for medication in reviewed:
            for rule in self.knowledge.renal_rules:
                if medication.is_(rule.selector) and rule.at_least <= egfr.value < rule.below:
                    advice = self._renal_advice(rule, medication, egfr)
                    if advice is not None:
                        yield advice
                    break

    def _renal_advice(self, rule: RenalRule, medication: Medication, egfr: Egfr) -> Advice | None:
        stale = self.today() - egfr.when > STALE_AFTER
        evidence = (
            Evidence(egfr.reference, f"eGFR {egfr.value:g} mL/min/1.73m2 on {egfr.when.isoformat()}"),
            Evidence(medication.reference, f"{medication.name} order being signed"),
        )
        rationale = rule.rationale + (
            " The most recent eGFR is over a year old: repeat it before acting." if stale else ""
        )
        if rule.action == "stop":
            confidence = 0.95
            indicator = "critical" if rule.drug else "warning"
            suggestion = _cancel(medication)
        else:
            daily = daily_dose_mg(medication.resource)
            if daily is not None and daily <= rule.max_daily_mg:
                return None
            confidence = 0.9 if daily is not None else 0.7
            indicator = "warning"
            suggestion = self._cap(medication, rule) if daily is not None else None
        return self._advice(
            summary=rule.summary.format(egfr=f"{egfr.value:g}"),
            indicator=indicator,
            rationale=rationale,
            confidence=confidence - (0.2 if stale else 0.0),
            evidence=evidence,
            suggestion=suggestion,
            rule_id=rule.id,
            citation=rule.source,
        )

    def _cap(self, medication: Medication, rule: RenalRule) -> ProposedSuggestion:
        dose, per_day = rule.capped_dose_mg, rule.capped_per_day
        updated = with_dose(medication.resource, dose, per_day)
        label = f"Change to {medication.name} {dose:g} mg {_times(per_day)} daily"
        action = ProposedAction("update", f"Reduce {medication.name} to {dose * per_day:g} mg a day", updated)
        return ProposedSuggestion(label, (action,), recommended=True)

    def _interactions(self, reviewed: list[Medication], others: list[Medication]) -> Iterable[tuple]:
        for medication in reviewed:
            for other in others:
                if other.reference == medication.reference:
                    continue
                for rule in self.knowledge.interactions:
                    pair = _ordered_pair(rule, medication, other)
                    if pair is not None:
                        key = (rule.id, frozenset((medication.reference, other.reference)))
                        yield key, self._interaction_advice(rule, medication, other, pair)

    def _interaction_advice(
        self, rule: Interaction, medication: Medication, other: Medication, pair: tuple[Medication, ...]
    ) -> Advice:
        return self._advice(
            summary=rule.summary.format(first=pair[0].name, second=pair[1].name),
            indicator=rule.indicator,
            rationale=rule.rationale,
            confidence=0.85,
            evidence=_pair_evidence(medication, other),
            suggestion=_cancel(medication),
            rule_id=rule.id,
            citation=rule.source,
        )

    def _duplicates(self, reviewed: list[Medication], others: list[Medication]) -> Iterable[tuple]:
        for duplicate in (d for d in self.knowledge.duplicate_classes if not d.skip):
            for medication in reviewed:
                for other in others:
                    same_class = duplicate.drug_class in medication.classes and (
                        duplicate.drug_class in other.classes
                    )
                    if other.reference != medication.reference and same_class:
                        key = ("duplicate", frozenset((medication.reference, other.reference)))
                        yield key, self._duplicate_advice(duplicate, medication, other)

    def _duplicate_advice(
        self, duplicate: DuplicateClass, medication: Medication, other: Medication
    ) -> Advice:
        names = f"{medication.name}, {other.name}"
        return self._advice(
            summary=f"Duplicate therapy: two {duplicate.label} ({names})",
            indicator="warning",
            rationale=(
                f"{medication.name} and {other.name} are both {duplicate.label}; taking two drugs of one "
                "class adds risk without adding benefit."
            ),
            confidence=0.8,
            evidence=_pair_evidence(medication, other),
            suggestion=_cancel(medication),
            rule_id=f"duplicate-{duplicate.drug_class}",
            citation=self.knowledge.duplicate_source,
        )

    def _allergies(self, reviewed: list[Medication], allergies: list[dict]) -> Iterable[Advice]:
        for medication in reviewed:
            for allergy in allergies:
                allergen = self._allergen(allergy)
                if allergen is not None and set(allergen.conflicts_with_classes) & set(medication.classes):
                    yield self._allergy_advice(allergen, allergy, medication)
                    break

    def _allergy_advice(self, allergen: Allergen, allergy: dict, medication: Medication) -> Advice:
        high = allergy.get("criticality") == "high"
        allergen_text = _allergy_text(allergy)
        return self._advice(
            summary=f"Documented allergy conflicts with {medication.name}",
            indicator="critical" if high else "warning",
            rationale=(
                f"The patient has a documented allergy to {allergen_text}; "
                f"{medication.name} belongs to a class that can cross-react."
            ),
            confidence=0.9 if high else 0.8,
            evidence=(
                Evidence(f"AllergyIntolerance/{allergy.get('id')}", f"allergy: {allergen_text}"),
                Evidence(medication.reference, f"{medication.name} order being signed"),
            ),
            suggestion=_cancel(medication),
            rule_id=allergen.id,
            citation=allergen.source,
        )

    def _allergen(self, allergy: dict) -> Allergen | None:
        concept = allergy.get("code") or {}
        codes = {f"{c.get('system')}|{c.get('code')}" for c in concept.get("coding") or ()}
        text = _allergy_text(allergy).lower()
        for allergen in self.knowledge.allergens:
            if codes & set(allergen.codes) or any(name in text for name in allergen.names):
                return allergen
        return None

    def _advice(self, *, suggestion: ProposedSuggestion | None, **fields: object) -> Advice:
        suggestions = (suggestion,) if suggestion is not None else ()
        return Advice(source=self.source, suggestions=suggestions, **fields)


def latest_egfr(observations: list[dict]) -> Egfr | None:
    """The most recent valid eGFR; older results never override a newer one."""
    best: Egfr | None = None
    for observation in observations:
        if observation.get("status") in VOID_STATUSES or not _is_egfr(observation):
            continue
        value = (observation.get("valueQuantity") or {}).get("value")
        when = _effective_date(observation)
        if not isinstance(value, int | float) or when is None:
            continue
        if best is None or when > best.when:
            best = Egfr(_reference(observation), float(value), when)
    return best


def _is_egfr(observation: dict) -> bool:
    codings = (observation.get("code") or {}).get("coding") or ()
    return any(c.get("code") in EGFR_LOINC for c in codings)


def _effective_date(resource: dict) -> date | None:
    raw = (
        resource.get("effectiveDateTime")
        or (resource.get("effectivePeriod") or {}).get("start")
        or resource.get("issued")
    )
    try:
        return date.fromisoformat(raw[:10]) if isinstance(raw, str) else None
    except ValueError:
        return None


def daily_dose_mg(order: dict) -> float | None:
    """Total mg a day from the first structured dosage, or None when it cannot be read."""
    for dosage in order.get("dosageInstruction") or ():
        repeat = (dosage.get("timing") or {}).get("repeat") or {}
        for dose_and_rate in dosage.get("doseAndRate") or ():
            quantity = dose_and_rate.get("doseQuantity") or {}
            hours = HOURS_PER.get(repeat.get("periodUnit", ""))
            value = quantity.get("value")
            if quantity.get("unit") != "mg" or hours is None or not isinstance(value, int | float):
                continue
            per_day = repeat.get("frequency", 1) * 24 / (repeat.get("period", 1) * hours)
            return float(value) * per_day
    return None


def with_dose(order: dict, dose_mg: float, per_day: int) -> dict:
    """The whole order with its dosage rewritten, as CDS Hooks update actions require."""
    updated = copy.deepcopy(order)
    updated["dosageInstruction"] = [
        {
            "text": f"{dose_mg:g} mg by mouth {_times(per_day)} daily",
            "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
            "doseAndRate": [
                {
                    "doseQuantity": {
                        "value": dose_mg,
                        "unit": "mg",
                        "system": "http://unitsofmeasure.org",
                        "code": "mg",
                    }
                }
            ],
        }
    ]
    return updated


def _cancel(medication: Medication) -> ProposedSuggestion:
    action = ProposedAction("delete", f"Cancel the {medication.name} order", resource_id=medication.reference)
    return ProposedSuggestion(f"Cancel {medication.name} order", (action,), recommended=True)


def _ordered_pair(rule: Interaction, a: Medication, b: Medication) -> tuple[Medication, Medication] | None:
    if a.is_(rule.first) and b.is_(rule.second):
        return a, b
    if b.is_(rule.first) and a.is_(rule.second):
        return b, a
    return None


def _unique(keyed: Iterable[tuple]) -> list[Advice]:
    """One card per (rule, pair of orders), whichever side of the pair is being reviewed."""
    seen: dict = {}
    for key, advice in keyed:
        seen.setdefault(key, advice)
    return list(seen.values())


def _is_current_allergy(allergy: dict) -> bool:
    clinical = _first_code(allergy.get("clinicalStatus"))
    verification = _first_code(allergy.get("verificationStatus"))
    return clinical in (None, "active") and verification not in ("refuted", "entered-in-error")


def _first_code(concept: dict | None) -> str | None:
    codings = (concept or {}).get("coding") or ()
    return codings[0].get("code") if codings else None


def _allergy_text(allergy: dict) -> str:
    concept = allergy.get("code") or {}
    displays = [c.get("display") for c in concept.get("coding") or () if c.get("display")]
    return concept.get("text") or (displays[0] if displays else "a documented allergen")


def _pair_evidence(reviewed: Medication, other: Medication) -> tuple[Evidence, Evidence]:
    status = "active medication" if other.resource.get("status") == "active" else "another draft order"
    return (
        Evidence(reviewed.reference, f"{reviewed.name} order being signed"),
        Evidence(other.reference, f"{other.name} ({status})"),
    )


def _reference(resource: dict) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def _times(per_day: int) -> str:
    return {1: "once", 2: "twice", 3: "three times", 4: "four times"}.get(per_day, f"{per_day} times")
