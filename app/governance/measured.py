"""Measured performance as a model card states it: the figures, and the data and command behind them.

``countersign eval`` (``app.evaluation``) computes them; the card only holds them.
"""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field


class Measure(BaseModel):
    """One measure on one slice of the cohort; ``scope`` is ``overall`` or a finding or rule id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    measure: str = Field(min_length=1)
    scope: str = Field(min_length=1)
    value: float | None
    ci_low: float | None = None
    ci_high: float | None = None
    numerator: int | None = Field(default=None, ge=0)
    denominator: int = Field(ge=0)
    variable: str = "all"
    group: str = "all"


class CalibrationBand(BaseModel):
    """Observed outcome rate among cases whose score fell in [low, high]."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    band: str
    cases: int = Field(ge=0)
    events: int = Field(ge=0)
    observed_rate: float | None


class MeasuredPerformance(BaseModel):
    """Written only by ``countersign eval``: figures, the exact data they came from, and how to redo it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = Field(min_length=1)
    dataset_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    cohort_size: int = Field(gt=0)
    seed: int
    evaluated_on: date
    command: str = Field(min_length=1)
    measures: tuple[Measure, ...] = Field(min_length=1)
    subgroups: tuple[Measure, ...] = ()
    calibration: tuple[CalibrationBand, ...] = ()
