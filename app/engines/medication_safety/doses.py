"""Dose arithmetic on MedicationRequest dosages: the mg a day an order allows, and a capped rewrite.

An order whose dose cannot be read gives None rather than a guess: a misread dose would either
miss a renal limit or propose a wrong one.
"""

from __future__ import annotations

import copy

from app.engines.fhir_json import codings

PERIODS_PER_DAY = {"s": 86400, "min": 1440, "h": 24, "d": 1, "wk": 1 / 7, "mo": 1 / 30, "a": 1 / 365}
TIMES_PER_DAY = {
    "QD": 1,
    "AM": 1,
    "PM": 1,
    "BID": 2,
    "TID": 3,
    "QID": 4,
    "Q4H": 6,
    "Q6H": 4,
    "Q8H": 3,
    "QOD": 0.5,
}
MG_PER_UNIT = {"mg": 1, "g": 1000, "mcg": 0.001, "ug": 0.001}


def daily_dose_mg(order: dict) -> float | None:
    """Most mg a day the order allows, or None when any of its dosages cannot be read.

    Dosages with the same ``sequence`` run together (summed); sequential ones do not (the largest wins).
    """
    per_sequence: dict[object, float] = {}
    for dosage in order.get("dosageInstruction") or ():
        daily = _dosage_mg_per_day(dosage) if isinstance(dosage, dict) else None
        if daily is None:
            return None
        sequence = dosage.get("sequence")
        per_sequence[sequence] = per_sequence.get(sequence, 0.0) + daily
    return max(per_sequence.values(), default=None)


def _dosage_mg_per_day(dosage: dict) -> float | None:
    times = _times_per_day(dosage.get("timing") or {})
    doses = [_dose_mg(d) for d in dosage.get("doseAndRate") or () if isinstance(d, dict)]
    dose = next((d for d in doses if d is not None), None)
    return None if times is None or dose is None else dose * times


def _dose_mg(dose_and_rate: dict) -> float | None:
    quantity = dose_and_rate.get("doseQuantity") or (dose_and_rate.get("doseRange") or {}).get("high") or {}
    value = quantity.get("value")
    factor = MG_PER_UNIT.get(str(quantity.get("code") or quantity.get("unit") or ""))
    if isinstance(value, bool) or not isinstance(value, int | float) or factor is None:
        return None
    return float(value) * factor


def _times_per_day(timing: dict) -> float | None:
    repeat = timing.get("repeat") or {}
    if repeat.get("periodUnit") in PERIODS_PER_DAY:
        frequency = repeat.get("frequencyMax") or repeat.get("frequency", 1)
        period = repeat.get("period", 1)
        if _positive(frequency) and _positive(period):
            return frequency * PERIODS_PER_DAY[repeat["periodUnit"]] / period
        return None
    return next(
        (TIMES_PER_DAY[c["code"]] for c in codings(timing.get("code")) if c.get("code") in TIMES_PER_DAY),
        None,
    )


def _positive(number: object) -> bool:
    return isinstance(number, int | float) and not isinstance(number, bool) and number > 0


def with_dose(order: dict, dose_mg: float, per_day: int) -> dict:
    """The whole order with one rewritten dosage (CDS Hooks updates carry the whole resource).

    Route and other fields of the first dosage are kept; timing, dose and text are replaced.
    """
    updated = copy.deepcopy(order)
    first = next((d for d in updated.get("dosageInstruction") or () if isinstance(d, dict)), {})
    replaced = {
        "text",
        "patientInstruction",
        "timing",
        "doseAndRate",
        "maxDosePerPeriod",
        "maxDosePerAdministration",
    }
    dosage = {key: value for key, value in first.items() if key not in replaced}
    dosage |= {
        "text": f"{dose_mg:g} mg {times(per_day)} daily",
        "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
        "doseAndRate": [
            {
                "doseQuantity": {
                    "value": int(dose_mg) if float(dose_mg).is_integer() else dose_mg,
                    "unit": "mg",
                    "system": "http://unitsofmeasure.org",
                    "code": "mg",
                }
            }
        ],
    }
    updated["dosageInstruction"] = [dosage]
    return updated


def times(per_day: int) -> str:
    """The dosage text's frequency, shared with the card so both say the same."""
    return {1: "once", 2: "twice", 3: "three times", 4: "four times"}.get(per_day, f"{per_day} times")
