"""Schema of the medication-safety knowledge file: a rule without a source never loads."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.validated_files import load_validated

Indicator = Literal["info", "warning", "critical"]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Drug(Strict):
    rxnorm: tuple[str, ...] = Field(min_length=1)
    classes: tuple[str, ...] = Field(min_length=1)


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

    def matches(self, ingredient: str, classes: tuple[str, ...]) -> bool:
        if self.drug:
            return ingredient == self.drug
        wanted = {self.drug_class} if self.drug_class else set(self.drug_classes)
        return bool(wanted & set(classes))


class RenalRule(Strict):
    id: str
    drug: str | None = None
    drug_class: str | None = None
    at_least: float = 0
    below: float
    action: Literal["stop", "cap"]
    max_daily_mg: float | None = None
    capped_dose_mg: float | None = None
    capped_per_day: int | None = None
    summary: str = Field(min_length=1)
    rationale: str = Field(min_length=1)
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _cap_is_complete(self) -> RenalRule:
        if self.action == "cap" and None in (self.max_daily_mg, self.capped_dose_mg, self.capped_per_day):
            raise ValueError("a cap rule needs max_daily_mg, capped_dose_mg and capped_per_day")
        return self

    @property
    def selector(self) -> DrugSelector:
        return DrugSelector(drug=self.drug, drug_class=self.drug_class)


class Interaction(Strict):
    id: str
    first: DrugSelector
    second: DrugSelector
    indicator: Indicator
    summary: str = Field(min_length=1)
    rationale: str = Field(min_length=1)
    source: str = Field(min_length=1)


class DuplicateClass(Strict):
    drug_class: str = Field(alias="class")
    label: str
    skip: bool = False


class Allergen(Strict):
    id: str
    codes: tuple[str, ...] = ()
    names: tuple[str, ...] = ()
    conflicts_with_classes: tuple[str, ...] = Field(min_length=1)
    source: str = Field(min_length=1)


class MedicationKnowledge(Strict):
    version: str
    drugs: dict[str, Drug]
    renal_rules: tuple[RenalRule, ...]
    interactions: tuple[Interaction, ...]
    duplicate_classes: tuple[DuplicateClass, ...]
    duplicate_source: str = Field(min_length=1)
    allergens: tuple[Allergen, ...]

    @model_validator(mode="after")
    def _references_exist(self) -> MedicationKnowledge:
        for rule in self.renal_rules:
            if rule.drug and rule.drug not in self.drugs:
                raise ValueError(f"renal rule {rule.id} names unknown drug {rule.drug}")
        return self


DEFAULT_PATH = Path(__file__).parent / "knowledge" / "medication_safety.yaml"


def load_medication_knowledge(path: Path = DEFAULT_PATH) -> MedicationKnowledge:
    return load_validated(path, MedicationKnowledge)
