"""Schema of the LACE knowledge file: the published point tables and the Charlson categories."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.files.validated import load_validated

DEFAULT_PATH = Path(__file__).parent / "knowledge" / "readmission_lace.yaml"
Code = Annotated[str, Field(pattern=r"^[A-Za-z0-9.\-]+$")]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StayBand(Strict):
    below: int = Field(gt=0)
    points: int = Field(ge=0)


class CharlsonCategory(Strict):
    id: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]*$")]
    weight: int = Field(ge=1)
    icd10: tuple[Code, ...] = Field(min_length=1)
    snomed: tuple[Code, ...] = ()
    replaces: tuple[str, ...] = ()


class LaceKnowledge(Strict):
    version: str = Field(min_length=1)
    source: str = Field(min_length=1)
    length_of_stay_points: tuple[StayBand, ...] = Field(min_length=1)
    acuity_points: int = Field(ge=0)
    comorbidity_points: tuple[int, ...] = Field(min_length=1)
    ed_visit_points: tuple[int, ...] = Field(min_length=1)
    ed_lookback_days: int = Field(gt=0)
    index_ed_window_hours: int = Field(ge=0)
    high_risk_at: int = Field(gt=0)
    charlson: tuple[CharlsonCategory, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> LaceKnowledge:
        bounds = [band.below for band in self.length_of_stay_points]
        if bounds != sorted(bounds):
            raise ValueError("length_of_stay_points must be in increasing order of `below`")
        ids = {category.id for category in self.charlson}
        unknown = {name for category in self.charlson for name in category.replaces} - ids
        if unknown:
            raise ValueError(f"charlson: `replaces` names unknown categories {sorted(unknown)}")
        return self

    def stay_points(self, days: int) -> int:
        bands = self.length_of_stay_points
        return next((band.points for band in bands if days < band.below), bands[-1].points)

    @staticmethod
    def capped(points: tuple[int, ...], count: int) -> int:
        """Points for ``count`` from a table whose last entry covers every larger count."""
        return points[min(count, len(points) - 1)]


def load_lace_knowledge(path: Path | None = None) -> LaceKnowledge:
    return load_validated(path or DEFAULT_PATH, LaceKnowledge)
