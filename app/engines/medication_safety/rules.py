"""Rule evaluation: which rules of the knowledge base each order under review breaks.

Findings name the rule and the medications, labs and allergies involved; how a card words them is
``cards``'s business, so a rule's firing can be tested apart from its text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeVar

from app.engines.fhir_json import (
    LabResult,
    aware,
    codings,
    concept_text,
    reference,
    status_code,
    word_pattern,
)
from app.engines.knowledge_schema import (
    AllergyGroup,
    CitedRule,
    DuplicateClass,
    Interaction,
    MedicationKnowledge,
    RenalRule,
)
from app.engines.medication_safety.doses import daily_dose_mg
from app.engines.medication_safety.record import Medication, Recogniser

Rule = TypeVar("Rule", Interaction, DuplicateClass)
Pair = tuple[Rule, Medication, list[Medication]]


@dataclass(frozen=True)
class RenalFinding:
    """An order the renal rule for the latest eGFR bars or caps; ``daily_mg`` is None unless read."""

    rule: RenalRule
    medication: Medication
    egfr: LabResult
    daily_mg: float | None
    stale: bool


@dataclass(frozen=True)
class AllergyMatch:
    """A current allergy that conflicts with an order, and the rule that says so."""

    reference: str
    rule: CitedRule
    label: str
    high: bool
    confirmed: bool
    same_ingredient: bool


class Rules:
    """The knowledge base's rules, with the allergy words compiled once for every call."""

    def __init__(self, knowledge: MedicationKnowledge, recogniser: Recogniser) -> None:
        self._knowledge = knowledge
        self._recogniser = recogniser
        self._stale_after = timedelta(days=knowledge.egfr_max_age_days)
        self._group_words = {group.id: word_pattern(group.names) for group in knowledge.allergy_groups}

    # Renal dose limits

    def need_egfr(self, reviewed: list[Medication]) -> bool:
        """Only read the labs when a renal rule could apply: the eGFR is then an input, else not."""
        return any(m.is_(rule) for m in reviewed for rule in self._knowledge.renal_rules)

    def renal(
        self, reviewed: list[Medication], egfr: LabResult | None, clock: Callable[[], datetime]
    ) -> Iterator[RenalFinding]:
        """Avoid rules always fire; cap rules only when the dose is over the cap or cannot be read."""
        if egfr is None:
            return
        for medication in reviewed:
            rule = self._renal_rule(medication, egfr)
            if rule is None:
                continue
            daily = None if rule.action == "avoid" else daily_dose_mg(medication.resource)
            if daily is not None and daily <= rule.max_daily_mg:
                continue
            stale = aware(clock()) - egfr.when > self._stale_after
            yield RenalFinding(rule, medication, egfr, daily, stale)

    def _renal_rule(self, medication: Medication, egfr: LabResult) -> RenalRule | None:
        rules = self._knowledge.renal_rules
        return next((r for r in rules if medication.is_(r) and r.at_least <= egfr.value < r.below), None)

    # Interacting pairs and duplicate therapy

    def interactions(
        self, reviewed: list[Medication], others: list[Medication]
    ) -> Iterator[Pair[Interaction]]:
        return _pairs(reviewed, others, self._knowledge.interactions, _interacts)

    def duplicates(
        self, reviewed: list[Medication], others: list[Medication]
    ) -> Iterator[Pair[DuplicateClass]]:
        return _pairs(reviewed, others, self._knowledge.duplicate_classes, _same_class)

    # Allergies

    def allergies(
        self, reviewed: list[Medication], allergies: list[dict]
    ) -> Iterator[tuple[Medication, list[AllergyMatch]]]:
        """Every conflicting allergy of each order, so that one card can cite them all."""
        for medication in reviewed:
            matches = [m for m in (self._allergy_match(a, medication) for a in allergies) if m is not None]
            if matches:
                yield medication, matches

    def _allergy_match(self, allergy: dict, medication: Medication) -> AllergyMatch | None:
        """The very ingredient first; else a class the allergy stands for (cross-reactivity)."""
        concept = allergy.get("code") or {}
        same = [name for name in self._recogniser.ingredients(concept) if name in medication.ingredients]
        if same:
            rule: CitedRule = self._knowledge.ingredient_allergy
            label = "/".join(same)
        else:
            group = next(
                (g for g in self._knowledge.allergy_groups if self._group_conflicts(g, concept, medication)),
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


# Pairs: one finding per (rule, order under review), naming every partner


def _pairs(
    reviewed: list[Medication],
    others: list[Medication],
    rules: Iterable[Rule],
    related: Callable[[Rule, Medication, Medication, set[str]], bool],
) -> Iterator[Pair[Rule]]:
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
