"""Schema of the medication-safety knowledge file: a rule without a source never loads.

Cross-references and summary templates are checked at load time too: a misspelt drug or class
would otherwise make a rule silently never fire, and a bad placeholder would fail on the request
path instead of at start.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from functools import cached_property
from pathlib import Path
from string import Formatter
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from app.files.validated import load_validated

DEFAULT_PATH = Path(__file__).parent / "knowledge" / "medication_safety.yaml"

Indicator = Literal["info", "warning", "critical"]
Text = Annotated[str, Field(min_length=1)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Drug(Strict):
    """An ingredient: its RxNorm codes (ingredient and checked products) and therapeutic classes."""

    rxnorm: tuple[Text, ...] = Field(min_length=1)
    classes: tuple[Text, ...] = Field(min_length=1)


class DrugSelector(Strict):
    """Matches one ingredient, one class, or any of several classes."""

    drug: str | None = None
    drug_class: str | None = None
    drug_classes: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _one_kind(self) -> DrugSelector:
        if sum(map(bool, (self.drug, self.drug_class, self.drug_classes))) != 1:
            raise ValueError("give exactly one of drug, drug_class, drug_classes")
        return self

    @cached_property
    def wanted_classes(self) -> frozenset[str]:
        """Cached: every rule asks it of every medication on every call."""
        return frozenset(self.drug_classes) | ({self.drug_class} if self.drug_class else set())

    def matches(self, ingredients: Collection[str], classes: Collection[str]) -> bool:
        if self.drug:
            return self.drug in ingredients
        return not self.wanted_classes.isdisjoint(classes)


class CitedRule(Strict):
    """Every rule has an id (cards and the audit trail name it) and the source it comes from."""

    id: Text
    source: Text


class RenalRule(CitedRule, DrugSelector):
    """A limit that applies while the latest eGFR is in [at_least, below)."""

    at_least: float = Field(default=0, ge=0)
    below: float = Field(gt=0)
    indicator: Indicator
    action: Literal["avoid", "cap"]
    max_daily_mg: float | None = Field(default=None, gt=0)
    capped_dose_mg: float | None = Field(default=None, gt=0)
    capped_per_day: int | None = Field(default=None, gt=0)
    summary: Text
    rationale: Text

    @model_validator(mode="after")
    def _consistent(self) -> RenalRule:
        if self.at_least >= self.below:
            raise ValueError("at_least must be below 'below'")
        _check_template(self.summary, {"drug", "egfr", "date"})
        if self.action == "cap":
            if self.max_daily_mg is None or self.capped_dose_mg is None or self.capped_per_day is None:
                raise ValueError("a cap rule needs max_daily_mg, capped_dose_mg and capped_per_day")
            if self.capped_dose_mg * self.capped_per_day > self.max_daily_mg:
                raise ValueError("the capped dose would itself exceed max_daily_mg")
        return self


class Interaction(CitedRule):
    """A pair to flag; ``second`` is the order proposed for cancelling when both are new."""

    first: DrugSelector
    second: DrugSelector
    indicator: Indicator
    summary: Text
    rationale: Text

    @field_validator("summary")
    @classmethod
    def _placeholders(cls, summary: str) -> str:
        return _check_template(summary, {"first", "second"})


class DuplicateClass(CitedRule):
    drug_class: Text = Field(alias="class")
    label: Text


class AllergyGroup(CitedRule):
    """Allergy codes ("system|code") and words that mean a reaction to a whole drug class."""

    label: Text
    codes: tuple[Text, ...] = ()
    names: tuple[Text, ...] = ()
    conflicts_with_classes: tuple[Text, ...] = Field(min_length=1)


class MedicationKnowledge(Strict):
    version: Text
    egfr_max_age_days: int = Field(gt=0)
    drugs: dict[str, Drug] = Field(min_length=1)
    renal_rules: tuple[RenalRule, ...]
    interactions: tuple[Interaction, ...]
    duplicate_classes: tuple[DuplicateClass, ...]
    allergy_groups: tuple[AllergyGroup, ...]
    ingredient_allergy: CitedRule

    @field_validator("drugs")
    @classmethod
    def _lower_case_names(cls, drugs: dict[str, Drug]) -> dict[str, Drug]:
        """Names are matched case-insensitively against order text, so they are stored lower case."""
        upper = [name for name in drugs if name != name.lower()]
        if upper:
            raise ValueError(f"drug names must be lower case: {upper}")
        return drugs

    @field_validator("renal_rules", "interactions")
    @classmethod
    def _selectors_exist(cls, rules: tuple, info: ValidationInfo) -> tuple:
        drugs = info.data.get("drugs")
        if drugs is not None:
            for rule in rules:
                selectors = (rule.first, rule.second) if isinstance(rule, Interaction) else (rule,)
                for selector in selectors:
                    named = [selector.drug] if selector.drug else []
                    _check_known(rule.id, named, selector.wanted_classes, drugs)
        return rules

    @field_validator("duplicate_classes", "allergy_groups")
    @classmethod
    def _classes_exist(cls, rules: tuple, info: ValidationInfo) -> tuple:
        drugs = info.data.get("drugs")
        if drugs is not None:
            for rule in rules:
                wanted = (
                    [rule.drug_class] if isinstance(rule, DuplicateClass) else rule.conflicts_with_classes
                )
                _check_known(rule.id, [], wanted, drugs)
        return rules

    @model_validator(mode="after")
    def _unique_ids(self) -> MedicationKnowledge:
        seen: set[str] = set()
        for rule in self.rules():
            if rule.id in seen:
                raise ValueError(f"rule id {rule.id!r} is used twice")
            seen.add(rule.id)
        return self

    def rules(self) -> Iterable[CitedRule]:
        yield from (*self.renal_rules, *self.interactions, *self.duplicate_classes, *self.allergy_groups)
        yield self.ingredient_allergy


def _check_known(rule_id: str, drugs: Iterable[str], classes: Iterable[str], known: dict[str, Drug]) -> None:
    known_classes = {name for drug in known.values() for name in drug.classes}
    for drug in drugs:
        if drug not in known:
            raise ValueError(f"rule {rule_id} names unknown drug {drug!r}")
    for drug_class in classes:
        if drug_class not in known_classes:
            raise ValueError(f"rule {rule_id} names class {drug_class!r}, which no drug has")


def _check_template(template: str, allowed: set[str]) -> str:
    names = {field for _, field, _, _ in Formatter().parse(template) if field is not None}
    unknown = names - allowed
    if unknown:
        raise ValueError(f"unknown placeholder(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    return template


def load_medication_knowledge(path: Path | None = None) -> MedicationKnowledge:
    """The shipped knowledge by default; an invalid file raises ``InvalidFile`` naming the field."""
    return load_validated(path or DEFAULT_PATH, MedicationKnowledge)
