"""Readmission risk: the LACE index from the discharge encounter, comorbidities and ED visits."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.engines.base import PatientData
from app.engines.lace_knowledge import load_lace_knowledge
from app.engines.readmission_lace import ReadmissionLaceEngine
from cds_hooks.advice import CardSource
from tests.builders import PATIENT_ID, USER_ID, condition, patient, searchset

SERVICE = "/cds-services/readmission-risk"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED = "http://snomed.info/sct"
NOW = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
SOURCE = CardSource("Countersign Readmission Risk (LACE) 1.0.0", "http://localhost/app/models/rr", "rr", "AI")


def encounter(enc_id: str, *, klass: str = "IMP", days_ago: int = 0, stay_days: int = 0, **extra) -> dict:
    start = NOW - timedelta(days=days_ago + stay_days)
    resource = {
        "resourceType": "Encounter",
        "id": enc_id,
        "status": "in-progress" if enc_id == "index" else "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "period": {"start": start.isoformat()},
    }
    if enc_id != "index":
        resource["period"]["end"] = (start + timedelta(hours=4)).isoformat()
    return resource | extra


EMERGENCY_ADMISSION = {
    "hospitalization": {
        "admitSource": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/admit-source", "code": "emd"}]
        }
    }
}


def high_risk_chart() -> tuple[dict, ...]:
    """8-day emergency stay (5 + 3), CHF + COPD + diabetes with renal complication (Charlson 4 -> 5),
    two ED visits in 6 months (2): LACE 15."""
    return (
        encounter("index", stay_days=8, **EMERGENCY_ADMISSION),
        condition("chf", ICD10, "I50.9"),
        condition("copd", SNOMED, "13645005"),
        condition("dm", ICD10, "E11.9"),
        condition("dmr", ICD10, "E11.22"),
        encounter("ed1", klass="EMER", days_ago=40),
        encounter("ed2", klass="EMER", days_ago=120),
        encounter("ed-old", klass="EMER", days_ago=300),
        encounter("clinic", klass="AMB", days_ago=20),
    )


def engine() -> ReadmissionLaceEngine:
    return ReadmissionLaceEngine(SOURCE, load_lace_knowledge(), clock=lambda: NOW)


def data(*resources: dict) -> PatientData:
    return PatientData(
        "encounter-discharge", PATIENT_ID, (patient(), *resources), encounter_id="Encounter/index"
    )


def test_every_component_is_scored_and_traced_to_its_resource():
    score = engine().score(data(*high_risk_chart()))
    assert (score.stay_days, score.emergent, score.charlson, score.ed_visits) == (8, True, 4, 2)
    assert score.points == (5, 3, 5, 2)
    assert score.total == 15
    refs = {item.reference for item in score.evidence}
    assert refs == {
        "Encounter/index",
        "Condition/chf",
        "Condition/copd",
        "Condition/dmr",
        "Encounter/ed1",
        "Encounter/ed2",
    }


def test_a_high_score_proposes_follow_up_within_seven_days():
    [advice] = engine().suggest(data(*high_risk_chart())).advice
    assert advice.summary == "High risk of readmission: LACE index 15"
    assert advice.indicator == "warning"
    [action] = advice.suggestions[0].actions
    assert action.type == "create"
    assert action.resource["resourceType"] == "ServiceRequest"
    assert action.resource["encounter"] == {"reference": "Encounter/index"}
    assert action.resource["occurrencePeriod"] == {"start": "2026-11-23", "end": "2026-11-30"}


def test_a_short_elective_stay_without_comorbidity_scores_low_and_gets_no_card():
    elective = {"priority": {"coding": [{"code": "R"}]}}
    result = engine().suggest(data(encounter("index", stay_days=2, **elective)))
    assert result.advice == ()
    assert engine().score(data(encounter("index", stay_days=2, **elective))).total == 2
    assert result.inputs_used == ("Encounter/index",)


@pytest.mark.parametrize(
    ("stay", "points"), [(0, 0), (1, 1), (3, 3), (4, 4), (6, 4), (7, 5), (13, 5), (14, 7)]
)
def test_length_of_stay_points_follow_the_published_table(stay, points):
    assert engine().score(data(encounter("index", stay_days=stay))).points[0] == points


def test_the_admissions_own_ed_stay_and_refuted_conditions_do_not_count():
    own_ed = encounter("ed0", klass="EMER", days_ago=3, stay_days=0)
    refuted = condition("chf", ICD10, "I50.9", verification="refuted")
    score = engine().score(data(encounter("index", stay_days=3), own_ed, refuted))
    assert (score.ed_visits, score.charlson) == (0, 0)


def test_without_the_discharge_encounter_there_is_no_score():
    assert (
        engine()
        .suggest(PatientData("encounter-discharge", PATIENT_ID, (patient(),), encounter_id="x"))
        .advice
        == ()
    )


def discharge_request(prefetch: dict) -> dict:
    return {
        "hook": "encounter-discharge",
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": USER_ID, "patientId": PATIENT_ID, "encounterId": "index"},
        "prefetch": prefetch,
    }


def prefetch_for(resources: tuple[dict, ...], patient_resource: dict | None = None) -> dict:
    index = resources[0]
    return {
        "patient": patient_resource or patient(),
        "encounter": index,
        "encounters": searchset([r for r in resources if r["resourceType"] == "Encounter"]),
        "conditions": searchset([r for r in resources if r["resourceType"] == "Condition"]),
    }


def test_the_hook_call_returns_the_lace_card(client, auth):
    response = client.post(
        SERVICE, json=discharge_request(prefetch_for(high_risk_chart())), headers=auth(SERVICE)
    )
    assert response.status_code == 200
    [card] = response.get_json()["cards"]
    assert card["summary"].startswith("High risk of readmission: LACE index ")
    assert card["suggestions"][0]["actions"][0]["resource"]["resourceType"] == "ServiceRequest"


def test_an_outpatient_encounter_is_outside_the_intended_use(client, auth):
    chart = (encounter("index", klass="AMB", stay_days=8, **EMERGENCY_ADMISSION), *high_risk_chart()[1:])
    response = client.post(SERVICE, json=discharge_request(prefetch_for(chart)), headers=auth(SERVICE))
    assert response.get_json()["cards"] == []
