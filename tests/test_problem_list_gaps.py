"""Problem-list gaps: a condition the record implies and the problem list lacks gets one card."""

from __future__ import annotations

import pytest

from app.engines.base import PatientData
from app.engines.problem_list_gaps import ProblemListGapsEngine
from app.engines.problem_list_knowledge import load_problem_list_knowledge
from cds_hooks.advice import CardSource
from tests.builders import (
    LOINC,
    PATIENT_ID,
    condition,
    lab,
    medication_request,
    patient,
    patient_view_request,
    searchset,
)

SERVICE = "/cds-services/problem-list-gaps"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
LEVOTHYROXINE = ("10582", "levothyroxine")
SOURCE = CardSource("Countersign Problem List Gaps 1.0.0", "http://localhost/app/models/plg", "plg", "AI")


def hba1c(value: float, days_ago: int = 20, obs_id: str = "a1c") -> dict:
    return lab("4548-4", value, "%", days_ago, obs_id)


def egfr(value: float, days_ago: int, obs_id: str) -> dict:
    return lab("98979-8", value, "mL/min/1.73m2", days_ago, obs_id)


def active(med_id: str, rxnorm: tuple[str, str]) -> dict:
    return medication_request(med_id, rxnorm, status="active")


def suggest(*resources: dict):
    engine = ProblemListGapsEngine(SOURCE, load_problem_list_knowledge())
    return engine.suggest(PatientData("patient-view", PATIENT_ID, resources=(patient(), *resources)))


def rules(*resources: dict) -> list[str]:
    return [advice.rule_id for advice in suggest(*resources).advice]


def test_hba1c_of_8_1_without_diabetes_on_the_list_proposes_provisional_type_2_diabetes():
    result = suggest(hba1c(8.1))
    [advice] = result.advice
    assert advice.rule_id == "type-2-diabetes"
    assert [e.reference for e in advice.evidence] == ["Observation/a1c"]
    assert "8.1 %" in advice.evidence[0].description
    [action] = advice.suggestions[0].actions
    condition_resource = action.resource
    assert action.type == "create"
    assert condition_resource["verificationStatus"]["coding"][0]["code"] == "provisional"
    assert condition_resource["category"][0]["coding"][0]["code"] == "problem-list-item"
    assert {"system": SNOMED, "code": "44054006", "display": "Type 2 diabetes mellitus"} in (
        condition_resource["code"]["coding"]
    )
    assert condition_resource["evidence"][0]["detail"] == [{"reference": "Observation/a1c"}]
    assert "Observation/a1c" in result.inputs_used


def test_two_independent_findings_raise_the_confidence():
    alone = suggest(hba1c(8.1)).advice[0].confidence
    both = suggest(hba1c(8.1), active("m1", ("6809", "metformin"))).advice[0]
    assert both.confidence > alone
    assert {e.reference for e in both.evidence} == {"Observation/a1c", "MedicationRequest/m1"}


@pytest.mark.parametrize(
    "recorded",
    [
        condition("c1", SNOMED, "44054006"),
        condition("c1", ICD10, "E11.65"),
        condition("c1", SNOMED, "44054006", verification="refuted"),
    ],
    ids=["snomed", "icd10-child-code", "refuted-by-a-clinician"],
)
def test_a_condition_already_recorded_gets_no_card(recorded):
    assert rules(hba1c(8.1), recorded) == []


def test_a_problem_entered_in_error_does_not_count_as_recorded():
    assert rules(hba1c(8.1), condition("c1", SNOMED, "44054006", verification="entered-in-error")) == [
        "type-2-diabetes"
    ]


def test_a_normal_latest_hba1c_gives_no_card_even_after_a_high_one():
    assert rules(hba1c(7.0, days_ago=400, obs_id="old"), hba1c(5.6, days_ago=10)) == []


def test_levothyroxine_without_hypothyroidism_on_the_list():
    assert rules(active("m1", LEVOTHYROXINE)) == ["hypothyroidism"]


def test_egfr_below_60_twice_90_days_apart_implies_ckd_but_30_days_apart_does_not():
    assert rules(egfr(52, 200, "e1"), egfr(48, 20, "e2")) == ["chronic-kidney-disease"]
    assert rules(egfr(52, 50, "e1"), egfr(48, 20, "e2")) == []
    assert rules(egfr(52, 200, "e1"), egfr(75, 20, "e2")) == []


def test_a_clean_chart_gets_no_card():
    assert rules(active("m1", ("29046", "lisinopril")), hba1c(5.4), egfr(90, 30, "e1")) == []


def test_a_result_in_another_unit_is_not_read():
    assert rules(lab("4548-4", 65, "mmol/mol", 20, "a1c")) == []


def test_the_hook_call_returns_the_card_with_an_add_to_problem_list_suggestion(client, auth):
    prefetch = {
        "patient": patient(),
        "problems": searchset([]),
        "medications": searchset([active("m1", LEVOTHYROXINE)]),
        "labs": searchset([hba1c(8.1)]),
    }
    response = client.post(SERVICE, json=patient_view_request(prefetch), headers=auth(SERVICE))
    assert response.status_code == 200
    cards = response.get_json()["cards"]
    assert sorted(card["summary"] for card in cards) == [
        "Possible hypothyroidism not on the problem list",
        "Possible type 2 diabetes mellitus not on the problem list",
    ]
    condition_resource = cards[0]["suggestions"][0]["actions"][0]["resource"]
    assert condition_resource["meta"]["security"][0]["code"] == "AIAST"


def test_discovery_lists_the_service_with_its_prefetch(client, auth):
    services = client.get("/cds-services", headers=auth("/cds-services")).get_json()["services"]
    [service] = [s for s in services if s["id"] == "problem-list-gaps"]
    assert service["hook"] == "patient-view"
    assert service["prefetch"]["labs"].startswith("Observation?patient={{context.patientId}}&code=")
    assert f"{LOINC}|4548-4" in service["prefetch"]["labs"]
