"""The medication-safety engine on its own: each rule family, its negatives, and what it reads."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml

from app.engines.base import PatientData
from app.engines.knowledge_schema import DEFAULT_PATH, load_medication_knowledge
from app.engines.medication_safety import MedicationSafetyEngine, daily_dose_mg
from app.validated_files import InvalidFile
from cds_hooks.advice import CardSource
from tests.builders import egfr, medication_request, patient

SOURCE = CardSource(
    "Countersign Medication Safety 1.0.0", "http://localhost/app/models/m", "ms", "AI med safety"
)
WARFARIN = ("855332", "warfarin sodium 5 MG Oral Tablet")
IBUPROFEN = ("197806", "ibuprofen 600 MG Oral Tablet")
ATORVASTATIN = ("617312", "atorvastatin 40 MG Oral Tablet")
SIMVASTATIN = ("198211", "simvastatin 40 MG Oral Tablet")
AMOXICILLIN = ("308191", "amoxicillin 500 MG Oral Capsule")


@pytest.fixture(scope="module")
def engine() -> MedicationSafetyEngine:
    return MedicationSafetyEngine(SOURCE, load_medication_knowledge())


def review(engine, drafts, resources=(), selections=()):
    data = PatientData(
        "order-sign", "pat-renal-001", (patient(), *resources), tuple(drafts), tuple(selections)
    )
    return engine.suggest(data)


def allergy(code: str, display: str, *, criticality: str = "high", verification: str = "confirmed") -> dict:
    return {
        "resourceType": "AllergyIntolerance",
        "id": f"allergy-{code}",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "verificationStatus": {"coding": [{"code": verification}]},
        "criticality": criticality,
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}]},
    }


def test_metformin_below_egfr_30_is_critical_with_a_delete(engine):
    result = review(engine, [medication_request("d1")], [egfr(25, obs_id="e1")])
    (advice,) = result.advice
    assert advice.indicator == "critical"
    assert advice.summary == "Metformin contraindicated at eGFR 25"
    action = advice.suggestions[0].actions[0]
    assert (action.type, action.resource_id) == ("delete", "MedicationRequest/d1")
    assert [e.reference for e in advice.evidence] == ["Observation/e1", "MedicationRequest/d1"]
    assert advice.citation.startswith("FDA")


def test_metformin_2000_mg_at_egfr_38_is_capped_to_1000(engine):
    result = review(engine, [medication_request("d1", dose_mg=1000, per_day=2)], [egfr(38)])
    (advice,) = result.advice
    assert advice.indicator == "warning"
    updated = advice.suggestions[0].actions[0].resource
    assert advice.suggestions[0].actions[0].type == "update"
    assert daily_dose_mg(updated) == 1000
    assert (updated["id"], updated["status"], updated["intent"]) == ("d1", "draft", "order")


def test_metformin_within_the_cap_gets_no_card(engine):
    assert review(engine, [medication_request("d1", dose_mg=500, per_day=1)], [egfr(38)]).advice == ()


def test_the_latest_egfr_wins_over_an_older_lower_one(engine):
    resources = [egfr(22, days_ago=400, obs_id="old"), egfr(75, days_ago=5, obs_id="new")]
    result = review(engine, [medication_request("d1")], resources)
    assert result.advice == ()
    assert "Observation/new" in result.inputs_used and "Observation/old" not in result.inputs_used


def test_an_entered_in_error_egfr_is_ignored(engine):
    wrong = egfr(15, days_ago=1) | {"status": "entered-in-error"}
    assert review(engine, [medication_request("d1")], [wrong, egfr(80, days_ago=30)]).advice == ()


def test_a_stale_egfr_lowers_confidence_and_says_so(engine):
    fresh = review(engine, [medication_request("d1")], [egfr(25, days_ago=10)]).advice[0]
    stale = review(engine, [medication_request("d1")], [egfr(25, days_ago=500)]).advice[0]
    assert stale.confidence < fresh.confidence
    assert "over a year old" in stale.rationale


def test_warfarin_with_a_new_nsaid_is_a_bleeding_warning(engine):
    active = medication_request("w1", WARFARIN, status="active", dose_mg=5, per_day=1)
    result = review(engine, [medication_request("n1", IBUPROFEN, dose_mg=600, per_day=3)], [active, egfr(80)])
    (advice,) = result.advice
    assert advice.rule_id == "warfarin-nsaid"
    assert advice.summary == "Bleeding risk: warfarin with ibuprofen"
    assert advice.suggestions[0].actions[0].resource_id == "MedicationRequest/n1"


def test_duplicate_statins_are_flagged_once(engine):
    active = medication_request("s1", SIMVASTATIN, status="active", dose_mg=40, per_day=1)
    result = review(engine, [medication_request("a1", ATORVASTATIN, dose_mg=40, per_day=1)], [active])
    assert [a.rule_id for a in result.advice] == ["duplicate-statin"]


def test_two_interacting_drafts_give_one_card_not_two(engine):
    drafts = [
        medication_request("w1", WARFARIN, dose_mg=5, per_day=1),
        medication_request("n1", IBUPROFEN, dose_mg=600, per_day=3),
    ]
    result = review(engine, drafts, [egfr(80)])
    assert [a.rule_id for a in result.advice] == ["warfarin-nsaid"]


def test_penicillin_allergy_with_amoxicillin_is_critical(engine):
    result = review(
        engine,
        [medication_request("x1", AMOXICILLIN, dose_mg=500, per_day=3)],
        [allergy("91936005", "Allergy to penicillin")],
    )
    (advice,) = result.advice
    assert advice.indicator == "critical"
    assert "AllergyIntolerance/allergy-91936005" in result.inputs_used


def test_a_refuted_allergy_is_ignored(engine):
    refuted = allergy("91936005", "Allergy to penicillin", verification="refuted")
    assert (
        review(engine, [medication_request("x1", AMOXICILLIN, dose_mg=500, per_day=3)], [refuted]).advice
        == ()
    )


def test_order_select_reviews_only_the_selected_order(engine):
    drafts = [medication_request("d1"), medication_request("d2")]
    result = review(engine, drafts, [egfr(25)], selections=["MedicationRequest/d2"])
    assert [a.suggestions[0].actions[0].resource_id for a in result.advice] == ["MedicationRequest/d2"]


def test_a_clean_chart_gets_nothing(engine):
    result = review(engine, [medication_request("d1", dose_mg=500, per_day=2)], [egfr(92)])
    assert result.advice == ()
    assert "MedicationRequest/d1" in result.inputs_used


def test_critical_cards_come_first(engine):
    active = medication_request("w1", WARFARIN, status="active", dose_mg=5, per_day=1)
    drafts = [medication_request("n1", IBUPROFEN, dose_mg=600, per_day=3), medication_request("d1")]
    indicators = [a.indicator for a in review(engine, drafts, [active, egfr(25)]).advice]
    assert indicators == sorted(indicators, key=["critical", "warning", "info"].index)
    assert indicators[0] == "critical"


def test_ten_thousand_unrelated_observations_do_not_change_the_answer(engine):
    noise = [egfr(90, days_ago=100 + i) | {"code": {"coding": [{"code": "2160-0"}]}} for i in range(10_000)]
    result = review(engine, [medication_request("d1")], [*noise, egfr(25, obs_id="signal")])
    assert [a.rule_id for a in result.advice] == ["metformin-egfr-below-30"]
    assert len(result.inputs_used) < 10


def test_every_summary_is_under_140_characters(engine):
    active = [
        medication_request(f"a{i}", c, status="active", dose_mg=10, per_day=1)
        for i, c in enumerate((WARFARIN, SIMVASTATIN))
    ]
    drafts = [
        medication_request("n1", IBUPROFEN, dose_mg=600, per_day=3),
        medication_request("s2", ATORVASTATIN, dose_mg=40, per_day=1),
    ]
    advice = review(engine, drafts, [*active, egfr(20)]).advice
    assert len(advice) >= 3
    assert all(len(a.summary) < 140 for a in advice)


def test_a_rule_without_a_source_does_not_load(tmp_path: Path):
    knowledge = yaml.safe_load(DEFAULT_PATH.read_text())
    del knowledge["renal_rules"][0]["source"]
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(knowledge))
    with pytest.raises(InvalidFile, match=r"renal_rules\.0\.source"):
        load_medication_knowledge(broken)


def test_the_clock_decides_staleness():
    engine = MedicationSafetyEngine(SOURCE, load_medication_knowledge(), today=lambda: date(2030, 1, 1))
    (advice,) = review(engine, [medication_request("d1")], [egfr(25, days_ago=10)]).advice
    assert "over a year old" in advice.rationale
