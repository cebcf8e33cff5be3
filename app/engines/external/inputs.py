"""The numbers a model receives, computed here from the prefetched chart, with what each was read from.

Each input's FHIRPath runs on the Patient, the hook's Encounter, or a Bundle of every prefetched
resource, and must give exactly one value of the declared datatype (or, with ``count``, any number
of items). Dates never leave as dates: ``age-years`` turns a birth date into whole years, capped
at 90 (HIPAA Safe Harbor aggregates older ages), and ``period-days`` turns a Period into its length
in whole days. A value that is absent takes the card's default or refuses the call; one that is
present but unusable is a failure, never silently replaced.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from app.engines.base import PatientData
from app.engines.external.client import Tensor
from app.engines.external.failure import ExternalModelFailed
from app.engines.external.fhirpath import compiled
from app.engines.external.spec import INT_DATATYPES, TensorInput, fits
from app.engines.fhir_json import parse_datetime, reference
from cds_hooks.advice import Evidence

AGE_CAP = 90
FLOAT_DATATYPES = frozenset({"FP32", "FP64"})


@dataclass(frozen=True)
class InputValue:
    """One tensor, what was read for it and from where, and the resources the value rests on."""

    tensor: Tensor
    evidence: tuple[Evidence, ...] = ()
    read: tuple[str, ...] = ()
    defaulted: bool = False


def read_inputs(inputs: Sequence[TensorInput], data: PatientData, now: datetime) -> list[InputValue]:
    """Every input's value, or ``ExternalModelFailed`` naming the first one that cannot be sent."""
    roots = {
        "Patient": data.patient,
        "Encounter": data.encounter,
        "Bundle": {
            "resourceType": "Bundle",
            "type": "collection",
            "entry": [{"resource": r} for r in data.resources],
        },
    }
    return [_read(tensor, roots[tensor.about], data, now) for tensor in inputs]


def _read(tensor: TensorInput, root: dict | None, data: PatientData, now: datetime) -> InputValue:
    found = _evaluate(tensor, root) if root is not None else []
    if tensor.transform == "count":
        value: object = len(found)
    elif not found:
        if tensor.missing == "refuse":
            raise ExternalModelFailed(f"input '{tensor.name}' missing")
        return InputValue(_tensor(tensor, tensor.missing), defaulted=True)
    elif len(found) > 1:
        raise ExternalModelFailed(f"input '{tensor.name}': {len(found)} values where one was expected")
    else:
        value = _value(tensor, found[0], now)
    evidence = _evidence(tensor, root, found, value)
    if tensor.about == "Bundle" and found and not evidence:
        return InputValue(_tensor(tensor, value), read=tuple(reference(r) for r in data.resources))
    return InputValue(_tensor(tensor, value), evidence, tuple(item.reference for item in evidence))


def _evidence(tensor: TensorInput, root: dict | None, found: list, value: object) -> tuple[Evidence, ...]:
    """The Patient or Encounter with the value read from it; for the Bundle, each counted resource.
    A value computed across the Bundle cannot be traced to one resource: it rests on all of them."""
    if root is None:
        return ()
    if tensor.about != "Bundle":
        return (Evidence(reference(root), f"{tensor.description}: {value}"),)
    if tensor.transform != "count" or not all(isinstance(i, dict) and "resourceType" in i for i in found):
        return ()
    refs = dict.fromkeys(reference(resource) for resource in found)
    return tuple(Evidence(ref, f"counted in {tensor.description}") for ref in refs)


def _evaluate(tensor: TensorInput, root: dict) -> list:
    try:
        return compiled(tensor.fhirpath)(root)
    except Exception:  # fhirpathpy raises plain Exception on data it cannot evaluate
        raise ExternalModelFailed(f"input '{tensor.name}': could not be evaluated") from None


def _value(tensor: TensorInput, found: object, now: datetime) -> object:
    if tensor.transform == "age-years":
        return _age_years(tensor, found, now)
    if tensor.transform == "period-days":
        return _period_days(tensor, found, now)
    if isinstance(found, Decimal):
        found = float(found)
    if isinstance(found, float) and found.is_integer() and tensor.datatype in INT_DATATYPES:
        return int(found)
    return found


def _age_years(tensor: TensorInput, found: object, now: datetime) -> int:
    born = parse_datetime(found)
    if born is None or born > now:
        raise ExternalModelFailed(f"input '{tensor.name}': not a birth date")
    today, birthday = now.date(), born.date()
    age = today.year - birthday.year - ((today.month, today.day) < (birthday.month, birthday.day))
    return min(age, AGE_CAP)


def _period_days(tensor: TensorInput, found: object, now: datetime) -> int:
    """Whole days from start to end, or to now while the period is open (a stay not yet ended)."""
    period = found if isinstance(found, dict) else {}
    start, end = parse_datetime(period.get("start")), parse_datetime(period.get("end"))
    if start is None or (end or now) < start:
        raise ExternalModelFailed(f"input '{tensor.name}': not a period with a start")
    return ((end or now).date() - start.date()).days


def _tensor(tensor: TensorInput, value: object) -> Tensor:
    """FP inputs go as floats, so the JSON says 70.0 for an FP32 age, as the datatype declares."""
    if not fits(value, tensor.datatype):
        raise ExternalModelFailed(f"input '{tensor.name}': does not fit {tensor.datatype}")
    return Tensor(tensor.name, tensor.datatype, float(value) if tensor.datatype in FLOAT_DATATYPES else value)
