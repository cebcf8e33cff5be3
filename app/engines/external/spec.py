"""The ``endpoint:`` section of a model card: a hospital's own model, served over KServe v2, as data.

Everything the engine does is declared here and checked when the card loads, so a CMIO reviews
one file and a mistake stops the service at start with the field named: where the server is and
how long it may take (``deadline_seconds`` has no default: every call must have one), which
numbers are computed from the chart and how (FHIRPath, numeric datatypes only: no BYTES, so no
text ever leaves), and how the score becomes a card.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StrictBool,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
)

from app.engines.external.fhirpath import check_expression
from app.engines.external.template import PLACEHOLDERS, check_text, placeholders_in

Datatype = Literal["FP32", "FP64", "INT32", "INT64", "BOOL"]
Transform = Literal["age-years", "period-days", "count"]
Indicator = Literal["info", "warning", "critical"]
About = Literal["Patient", "Encounter", "Bundle"]
TENSOR_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
"""An identifier, so that card templates can name it: ``{age}``."""
MODEL_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
INT_DATATYPES = frozenset({"INT32", "INT64"})
LIMITS = {"INT32": 2**31, "INT64": 2**63, "FP32": 3.4028234663852886e38, "FP64": math.inf}
"""Magnitudes each datatype can hold: a value outside would be rejected or silently changed by the server."""
SEVERITY = {"info": 0, "warning": 1, "critical": 2}
RESERVED_NAMES = frozenset({"score", "indicator"})


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorInput(_Section):
    """One number sent to the model, computed here from the prefetched resources."""

    name: str = Field(pattern=TENSOR_NAME)
    label: str = Field("", max_length=80)
    """How the card's evidence names the value (default: the tensor name)."""
    about: About
    fhirpath: str = Field(min_length=1, max_length=1000)
    datatype: Datatype
    transform: Transform | None = None
    missing: StrictBool | StrictInt | StrictFloat | Literal["refuse"] = "refuse"
    """The value sent when the expression finds nothing, or ``refuse``: then no card, reason recorded."""

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_NAMES:
            raise ValueError(f"{name!r} is reserved for card templates")
        return name

    @field_validator("fhirpath")
    @classmethod
    def _compiles(cls, fhirpath: str, info: ValidationInfo) -> str:
        if "about" in info.data:
            check_expression(fhirpath, info.data["about"])
        return fhirpath

    @field_validator("transform")
    @classmethod
    def _numeric_transform(cls, transform: Transform | None, info: ValidationInfo) -> Transform | None:
        if transform is not None and info.data.get("datatype") == "BOOL":
            raise ValueError("a BOOL input takes no transform (transforms make numbers)")
        return transform

    @field_validator("missing")
    @classmethod
    def _fits_datatype(cls, missing: object, info: ValidationInfo) -> object:
        """Only checked when written: an input counted with ``count`` is never missing (it counts 0)."""
        if info.data.get("transform") == "count":
            raise ValueError("not used with transform count: an empty result counts 0")
        datatype = info.data.get("datatype")
        if missing == "refuse" or datatype is None:
            return missing
        if not fits(missing, datatype):
            raise ValueError(f"the default must be a {datatype} value or 'refuse'")
        return missing

    @property
    def description(self) -> str:
        return self.label or self.name

    def sample(self) -> object:
        """A value of this input's type, to check card templates against."""
        return True if self.datatype == "BOOL" else 1 if self.datatype in INT_DATATYPES else 0.5


class OutputTensor(_Section):
    """Which output tensor holds the score, and which element of it."""

    name: str = Field(min_length=1, max_length=128)
    index: int = Field(0, ge=0, le=1023)


class Threshold(_Section):
    at_least: float = Field(allow_inf_nan=False)
    indicator: Indicator


class SuggestionTemplate(_Section):
    """A FHIR resource the clinician may accept with the card; never written by Countersign itself."""

    label: str = Field(min_length=1, max_length=120)
    description: str = Field("", max_length=300)
    """What accepting does (default: the label)."""
    recommended: bool = False
    resource: dict[str, JsonValue]

    @field_validator("resource")
    @classmethod
    def _is_fhir(cls, resource: dict[str, JsonValue]) -> dict[str, JsonValue]:
        if not isinstance(resource.get("resourceType"), str) or not resource["resourceType"]:
            raise ValueError("needs a resourceType")
        unknown = placeholders_in(resource) - PLACEHOLDERS
        if unknown:
            raise ValueError(f"unknown placeholder {{{{{sorted(unknown)[0]}}}}} (known: patient, encounter)")
        return resource


class CardMapping(_Section):
    """How a score becomes a card: the first threshold it reaches; below the lowest, no card."""

    rule_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,63}$")
    summary: str = Field(min_length=1, max_length=200)
    detail: str = Field(min_length=1, max_length=2000)
    indicators: list[Threshold] = Field(min_length=1, max_length=10)
    confidence: float | str
    """A fixed confidence, or ``score`` when the score is a calibrated probability."""
    citation: str = Field("", max_length=500)
    suggestion: SuggestionTemplate | None = None

    @field_validator("indicators")
    @classmethod
    def _descending(cls, indicators: list[Threshold]) -> list[Threshold]:
        for higher, lower in pairwise(indicators):
            if lower.at_least >= higher.at_least:
                raise ValueError("thresholds must be listed from the highest at_least down, without repeats")
            if SEVERITY[lower.indicator] > SEVERITY[higher.indicator]:
                raise ValueError("a lower score may not give a more severe indicator")
        return indicators

    @field_validator("confidence")
    @classmethod
    def _confidence(cls, confidence: float | str, info: ValidationInfo) -> float | str:
        if isinstance(confidence, str) and confidence != "score":
            raise ValueError("a number from 0 to 1, or 'score'")
        if isinstance(confidence, float) and not 0 <= confidence <= 1:
            raise ValueError("a fixed confidence lies between 0 and 1")
        thresholds = info.data.get("indicators") or []
        if confidence == "score" and any(not 0 <= t.at_least <= 1 for t in thresholds):
            raise ValueError("'score' needs a probability: every at_least must lie between 0 and 1")
        return confidence

    def indicator_for(self, score: float) -> Indicator | None:
        return next((t.indicator for t in self.indicators if score >= t.at_least), None)


class BreakerSettings(_Section):
    """After ``failures`` failed calls in a row, calls are refused at once for ``reset_seconds``."""

    failures: int = Field(3, ge=1, le=100)
    reset_seconds: float = Field(30.0, gt=0, le=3600)


class ExternalModel(_Section):
    """A model version served by the hospital over the KServe Open Inference Protocol (v2)."""

    protocol: Literal["kserve-v2"]
    url: str = Field(max_length=500)
    """Base URL of the inference server, e.g. ``https://models.hospital.example``."""
    model_name: str = Field(pattern=MODEL_NAME)
    model_version: str | None = Field(None, pattern=MODEL_NAME)
    deadline_seconds: float = Field(gt=0, le=30)
    breaker: BreakerSettings = BreakerSettings()
    prefetch: dict[str, str] = Field(min_length=1)
    inputs: list[TensorInput] = Field(min_length=1, max_length=64)
    output: OutputTensor
    card: CardMapping

    @field_validator("url")
    @classmethod
    def _base_url(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http or https URL with a host")
        if parts.username or parts.password or parts.query or parts.fragment:
            raise ValueError("a base URL only: no credentials, query or fragment")
        return url.rstrip("/")

    @field_validator("prefetch")
    @classmethod
    def _templates(cls, prefetch: dict[str, str]) -> dict[str, str]:
        for key, template in prefetch.items():
            if not key.replace("_", "").replace("-", "").isalnum() or not template.strip():
                raise ValueError(f"{key!r}: a key of letters, digits, - or _ and a FHIR query template")
        return prefetch

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, inputs: list[TensorInput], info: ValidationInfo) -> list[TensorInput]:
        names = [tensor.name for tensor in inputs]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"input {repeated[0]!r} is declared twice")
        fetched = {
            template.split("?")[0].split("/")[0] for template in info.data.get("prefetch", {}).values()
        }
        for tensor in inputs:
            if tensor.about != "Bundle" and tensor.about not in fetched:
                raise ValueError(f"input {tensor.name!r} reads the {tensor.about}: prefetch none")
        return inputs

    @field_validator("card")
    @classmethod
    def _templates_render(cls, card: CardMapping, info: ValidationInfo) -> CardMapping:
        samples = {"score": 0.5, "indicator": "warning"}
        samples |= {tensor.name: tensor.sample() for tensor in info.data.get("inputs", [])}
        for field in ("summary", "detail"):
            try:
                check_text(getattr(card, field), samples)
            except ValueError as error:
                raise ValueError(f"{field}: {error}") from None
        return card

    @property
    def infer_url(self) -> str:
        version = f"/versions/{self.model_version}" if self.model_version else ""
        return f"{self.url}/v2/models/{self.model_name}{version}/infer"


def fits(value: object, datatype: str) -> bool:
    """Whether ``value`` is exactly representable as ``datatype`` (booleans are not numbers here)."""
    if datatype == "BOOL":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return -LIMITS[datatype] <= value < LIMITS[datatype]
    if not isinstance(value, float) or datatype in INT_DATATYPES:
        return False
    return math.isfinite(value) and abs(value) <= LIMITS[datatype]
