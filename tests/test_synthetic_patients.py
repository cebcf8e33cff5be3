"""The synthetic cohort holds each service's positive and negative cases, and a server accepts it."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest

from sandbox.ehr.synthetic.cohort import cohort
from sandbox.ehr.synthetic.loader import load_cohort
from tests.writeback_helpers import search

TODAY = date(2026, 11, 23)
PATIENTS = {p.id: p for p in cohort(TODAY)}
LOINC_EGFR, LOINC_HBA1C = "98979-8", "4548-4"


def of_type(patient_id: str, resource_type: str) -> list[dict]:
    return [r for r in PATIENTS[patient_id].resources if r["resourceType"] == resource_type]


def labs(patient_id: str, loinc: str) -> list[tuple[float, date]]:
    """(value, day) of one test, newest first."""
    found = [
        (o["valueQuantity"]["value"], date.fromisoformat(o["effectiveDateTime"][:10]))
        for o in of_type(patient_id, "Observation")
        if o["code"]["coding"][0]["code"] == loinc
    ]
    return sorted(found, key=lambda item: item[1], reverse=True)


def problems(patient_id: str) -> set[str]:
    return {c["code"]["coding"][0]["display"].lower() for c in of_type(patient_id, "Condition")}


def drugs(patient_id: str) -> set[str]:
    return {
        m["medicationCodeableConcept"]["coding"][0]["display"]
        for m in of_type(patient_id, "MedicationRequest")
    }


def age(patient_id: str) -> int:
    born = date.fromisoformat(of_type(patient_id, "Patient")[0]["birthDate"])
    return TODAY.year - born.year - ((TODAY.month, TODAY.day) < (born.month, born.day))


def test_at_least_twelve_adults_and_one_child_all_tagged_as_test_data():
    ages = [age(pid) for pid in PATIENTS]
    assert sum(a >= 18 for a in ages) >= 12 and sum(a < 18 for a in ages) == 1
    for patient in PATIENTS.values():
        assert all(r["meta"]["tag"][0]["code"] == "HTEST" for r in patient.resources)
        types = {r["resourceType"] for r in patient.resources}
        assert {"Patient", "Encounter"} <= types


def test_metformin_patient_has_egfr_25_as_latest_result():
    assert "metformin" in drugs("cs-renal-metformin")
    assert labs("cs-renal-metformin", LOINC_EGFR)[0] == (25, TODAY - timedelta(days=12))


def test_problem_list_gap_cases():
    assert labs("cs-hba1c-gap", LOINC_HBA1C)[0][0] == 8.1
    assert not any("diabetes" in p for p in problems("cs-hba1c-gap"))
    assert "levothyroxine" in drugs("cs-levothyroxine-gap")
    assert not any("thyroid" in p for p in problems("cs-levothyroxine-gap"))
    low = [day for value, day in labs("cs-ckd-gap", LOINC_EGFR) if value < 60]
    assert max(low) - min(low) >= timedelta(days=90)
    assert not any("kidney" in p for p in problems("cs-ckd-gap"))


def length_points(days: int) -> int:
    """LACE 'L': under 4 days one point a day, 4-6 days 4, 7-13 days 5, 14 or more 7."""
    if days < 4:
        return days
    return 4 if days < 7 else 5 if days < 14 else 7


def lace(patient_id: str) -> int:
    """LACE index (van Walraven 2010) from the chart, as of the reference day."""
    encounters = of_type(patient_id, "Encounter")
    [stay] = [e for e in encounters if e["status"] == "in-progress"]
    length = length_points((TODAY - date.fromisoformat(stay["period"]["start"][:10])).days)
    acute = 3 if stay["priority"]["coding"][0]["code"] == "EM" else 0
    weights = {"I50": 2, "J44": 1, "E11.2": 2, "N18": 2, "I25.2": 1, "I48": 0}
    icd = [c["code"]["coding"][1]["code"] for c in of_type(patient_id, "Condition")]
    charlson = sum(w for prefix, w in weights.items() for code in icd if code.startswith(prefix))
    since = datetime.combine(TODAY - timedelta(days=182), datetime.min.time())
    visits = sum(
        e["class"]["code"] == "EMER" and datetime.fromisoformat(e["period"]["start"][:19]) >= since
        for e in encounters
    )
    return length + acute + (5 if charlson >= 4 else charlson) + min(visits, 4)


def test_discharge_cases_have_high_and_low_lace():
    assert lace("cs-discharge-high-lace") >= 10
    assert lace("cs-discharge-low-lace") <= 4


@pytest.mark.integration
def test_the_fhir_server_accepts_every_bundle_and_reloading_does_not_duplicate(fhir_server):
    suffix = "-reload"
    load_cohort(fhir_server, TODAY, suffix)
    load_cohort(fhir_server, TODAY, suffix)
    for patient_id, patient in PATIENTS.items():
        stored = search(fhir_server, "Observation", patient=patient_id + suffix)
        assert len(stored) == len([r for r in patient.resources if r["resourceType"] == "Observation"])
