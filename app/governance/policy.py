"""A model version's policy: where and how its output may reach a clinician, and the intended-use check."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.engines.base import PatientData
from app.governance.applicability import ApplicabilityRule


class Policy(BaseModel):
    """Where and how a model's output may reach a clinician; applied by the guardrail pipeline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    hooks: tuple[str, ...] = Field(min_length=1)
    applicability: tuple[ApplicabilityRule, ...] = ()
    confidence_floor: float = Field(ge=0, le=1)
    confidence_threshold: float = Field(ge=0, le=1)
    max_cards: int = Field(ge=1)
    override_suppression_hours: int = Field(ge=0)
    risk_tier: Literal["low", "moderate", "high"] = "moderate"


def outside_intended_use(policy: Policy, hook: str, data: PatientData) -> str | None:
    """Why the call is outside the model's intended use, or None when every condition holds."""
    if hook not in policy.hooks:
        return f"hook {hook} is not in the intended use"
    subjects = {"Patient": data.patient, "Encounter": data.encounter}
    for rule in policy.applicability:
        if not rule.holds_for(subjects[rule.about]):
            return rule.outside
    return None
