"""Intended use as data: FHIRPath conditions from the model card, checked before a model runs.

A card states where its model applies (hooks, age, care setting, required inputs) as FHIRPath
expressions on the patient or the hook's encounter, so a CMIO reads and changes them in the
card, not in code. Expressions are compiled when the card loads: a typo stops the service at
start instead of silently letting every patient through.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Literal

from fhirpathpy import compile as compile_fhirpath
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.engines.base import PatientData

if TYPE_CHECKING:
    from collections.abc import Callable

    from app.registry import Policy


class ApplicabilityRule(BaseModel):
    """One condition of the intended use; ``outside`` is what the record says when it fails."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    about: Literal["Patient", "Encounter"]
    fhirpath: str = Field(min_length=1)
    outside: str = Field(min_length=1)

    @field_validator("fhirpath")
    @classmethod
    def _compiles(cls, expression: str) -> str:
        try:
            _compiled(expression)
        except Exception as error:  # fhirpathpy raises parser-specific exceptions
            raise ValueError(f"not a valid FHIRPath expression: {error}") from None
        return expression

    def holds_for(self, resource: dict | None) -> bool:
        """True only when the expression evaluates to exactly ``true``; missing data fails closed."""
        return resource is not None and _compiled(self.fhirpath)(resource) == [True]


@lru_cache(maxsize=256)
def _compiled(expression: str) -> Callable[[dict], list]:
    return compile_fhirpath(expression)


def outside_intended_use(policy: Policy, hook: str, data: PatientData) -> str | None:
    """Why the call is outside the model's intended use, or None when every condition holds."""
    if hook not in policy.hooks:
        return f"hook {hook} is not in the intended use"
    subjects = {"Patient": data.patient, "Encounter": data.encounter}
    for rule in policy.applicability:
        if not rule.holds_for(subjects[rule.about]):
            return rule.outside
    return None
