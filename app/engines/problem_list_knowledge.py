"""Schema of the problem-list-gaps knowledge file: each finding says what implies a condition, and why."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.files.validated import load_validated

DEFAULT_PATH = Path(__file__).parent / "knowledge" / "problem_list_gaps.yaml"
Text = Annotated[str, Field(min_length=1)]
Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9.\-]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RecordedAs(Strict):
    """Codes that mean the problem list already covers the condition."""

    snomed: tuple[Code, ...] = Field(min_length=1)
    icd10_prefixes: tuple[Code, ...] = Field(min_length=1)


class Finding(Strict):
    """One kind of evidence that implies the condition, with the confidence it alone carries."""

    id: Text
    kind: Literal["lab", "medication"]
    description: Text
    confidence: float = Field(gt=0, le=1)
    source: Text
    drugs: dict[str, tuple[Code, ...]] = Field(default_factory=dict)
    loinc: tuple[Code, ...] = ()
    unit: str = ""
    at_least: float | None = None
    below: float | None = None
    min_span_days: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _complete(self) -> Finding:
        if self.kind == "medication" and not self.drugs:
            raise ValueError("a medication finding lists its drugs")
        if self.kind == "lab":
            if not self.loinc or not self.unit:
                raise ValueError("a lab finding gives its LOINC codes and unit")
            if (self.at_least is None) == (self.below is None):
                raise ValueError("a lab finding gives exactly one of at_least, below")
        return self

    def abnormal(self, value: float) -> bool:
        return value >= self.at_least if self.at_least is not None else value < (self.below or 0)


class ImpliedCondition(Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    display: Text
    snomed: Code
    icd10: Code
    recorded_as: RecordedAs
    findings: tuple[Finding, ...] = Field(min_length=1)


class ProblemListKnowledge(Strict):
    version: Text
    conditions: tuple[ImpliedCondition, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_ids(self) -> ProblemListKnowledge:
        ids = [c.id for c in self.conditions] + [f.id for c in self.conditions for f in c.findings]
        if len(ids) != len(set(ids)):
            raise ValueError("condition and finding ids must be unique")
        return self


def load_problem_list_knowledge(path: Path | None = None) -> ProblemListKnowledge:
    return load_validated(path or DEFAULT_PATH, ProblemListKnowledge)
