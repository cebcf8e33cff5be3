"""Synthetic people for evaluation cohorts: demographics drawn from fixed weights, never real data."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, timedelta

OMB_RACE = "urn:oid:2.16.840.1.113883.6.238"
US_CORE = "http://hl7.org/fhir/us/core/StructureDefinition"
# (code, display, weight): roughly the US adult population.
RACES = (
    ("1002-5", "American Indian or Alaska Native", 1.0),
    ("2028-9", "Asian", 6.0),
    ("2054-5", "Black or African American", 13.0),
    ("2076-8", "Native Hawaiian or Other Pacific Islander", 0.5),
    ("2106-3", "White", 60.0),
)
ETHNICITIES = (("2135-2", "Hispanic or Latino", 19.0), ("2186-5", "Not Hispanic or Latino", 81.0))
AGE_BANDS = ((18, 44), (45, 64), (65, 79), (80, 200))


@dataclass(frozen=True)
class Person:
    """What the fairness breakdown needs, and the Patient resource the engine reads."""

    sex: str
    age: int
    race: str
    ethnicity: str
    patient: dict

    @property
    def demographics(self) -> dict[str, str]:
        return {
            "sex": self.sex,
            "age_band": age_band(self.age),
            "race": self.race,
            "ethnicity": self.ethnicity,
        }


def age_band(age: int) -> str:
    low, high = next((low, high) for low, high in AGE_BANDS if low <= age <= high)
    return f"{low}+" if high >= 200 else f"{low}-{high}"


def person(rng: random.Random, patient_id: str, on: date, min_age: int = 18, max_age: int = 95) -> Person:
    sex = rng.choice(("female", "male"))
    age = rng.randint(min_age, max_age)
    race = rng.choices(RACES, weights=[w for *_, w in RACES])[0]
    ethnicity = rng.choices(ETHNICITIES, weights=[w for *_, w in ETHNICITIES])[0]
    born = on - timedelta(days=age * 365 + rng.randint(1, 360) + age // 4)
    patient = {
        "resourceType": "Patient",
        "id": patient_id,
        "gender": sex,
        "birthDate": born.isoformat(),
        "extension": [
            _category_extension("us-core-race", OMB_RACE, race[0], race[1]),
            _category_extension("us-core-ethnicity", OMB_RACE, ethnicity[0], ethnicity[1]),
        ],
    }
    return Person(sex, age, race[1], ethnicity[1], patient)


def _category_extension(name: str, system: str, code: str, display: str) -> dict:
    return {
        "url": f"{US_CORE}/{name}",
        "extension": [
            {"url": "ombCategory", "valueCoding": {"system": system, "code": code, "display": display}},
            {"url": "text", "valueString": display},
        ],
    }
