"""The medication-safety engine on its own: each rule family, its negatives, and what it reads.

Fixtures are inline plain dicts and the clock is fixed, so every expectation is exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.engines.base import PatientData
from app.engines.knowledge_schema import DEFAULT_PATH
from app.engines.medication_safety import MedicationSafetyEngine, daily_dose_mg, load_medication_knowledge
from app.files.validated import InvalidFile
from cds_hooks.advice import Advice, AdviceSet, CardSource, ProposedAction
from tests.yaml_files import edited_copy

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
SOURCE = CardSource(
    "Countersign Medication Safety 1.0.0", "http://localhost/app/models/ms", "ms", "AI med safety"
)

METFORMIN = ("860975", "metformin hydrochloride 500 MG Oral Tablet")
WARFARIN = ("855332", "warfarin sodium 5 MG Oral Tablet")
IBUPROFEN = ("197806", "ibuprofen 600 MG Oral Tablet")
NAPROXEN = ("7258", "naproxen")
ATORVASTATIN = ("617312", "atorvastatin 20 MG Oral Tablet")
SIMVASTATIN = ("198211", "simvastatin 40 MG Oral Tablet")
ROSUVASTATIN = ("301542", "rosuvastatin")
CLARITHROMYCIN = ("21212", "clarithromycin")
AMOXICILLIN = ("308191", "amoxicillin 500 MG Oral Capsule")
SULFAMETHOXAZOLE = ("10180", "sulfamethoxazole")
GABAPENTIN = ("25480", "gabapentin")


# Fixtures


def day(days_ago: int) -> str:
    return (NOW - timedelta(days=days_ago)).date().isoformat()


def egfr(value: float, days_ago: int = 10, obs_id: str = "egfr", **extra: object) -> dict:
    return {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "final",
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "98979-8", "display": "eGFR CKD-EPI 2021"}]
        },
        "effectiveDateTime": day(days_ago),
        "valueQuantity": {"value": value, "unit": "mL/min/1.73m2", "code": "mL/min/{1.73_m2}"},
    } | extra


def glucose(obs_id: str, days_ago: int = 1) -> dict:
    return {
        "resourceType": "Observation",
        "id": obs_id,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7"}]},
        "effectiveDateTime": day(days_ago),
        "valueQuantity": {"value": 5.4, "unit": "mmol/L"},
    }


def order(
    med_id: str,
    drug: tuple[str, str] = METFORMIN,
    *,
    status: str = "draft",
    dose_mg: float = 1000,
    per_day: int = 2,
) -> dict:
    return {
        "resourceType": "MedicationRequest",
        "id": med_id,
        "status": status,
        "intent": "order",
        "medicationCodeableConcept": {"coding": [{"system": RXNORM, "code": drug[0], "display": drug[1]}]},
        "subject": {"reference": "Patient/p1"},
        "dosageInstruction": [
            {
                "text": f"{dose_mg:g} mg {per_day} times daily",
                "route": {"text": "oral"},
                "timing": {"repeat": {"frequency": per_day, "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": dose_mg, "unit": "mg"}}],
            }
        ],
    }


def active(med_id: str, drug: tuple[str, str]) -> dict:
    return order(med_id, drug, status="active", dose_mg=10, per_day=1)


def allergy(
    allergy_id: str,
    coding: tuple[str, str, str] | None = (SNOMED, "91936005", "Allergy to penicillin"),
    *,
    text: str | None = None,
    criticality: str = "high",
    verification: str = "confirmed",
    clinical: str = "active",
) -> dict:
    code: dict = (
        {"coding": [{"system": coding[0], "code": coding[1], "display": coding[2]}]} if coding else {}
    )
    if text:
        code["text"] = text
    return {
        "resourceType": "AllergyIntolerance",
        "id": allergy_id,
        "clinicalStatus": {"coding": [{"code": clinical}]},
        "verificationStatus": {"coding": [{"code": verification}]},
        "criticality": criticality,
        "code": code,
    }


PATIENT = {
    "resourceType": "Patient",
    "id": "p1",
    "name": [{"family": "Quillfeather", "given": ["Odalys"]}],
    "identifier": [{"system": "urn:mrn", "value": "MRN-771234"}],
}


@pytest.fixture(scope="module")
def engine() -> MedicationSafetyEngine:
    return MedicationSafetyEngine(SOURCE, load_medication_knowledge(), clock=lambda: NOW)


def review(
    engine: MedicationSafetyEngine,
    drafts: list[dict],
    resources: Sequence[dict] = (),
    *,
    hook: str = "order-sign",
    selections: Sequence[str] = (),
) -> AdviceSet:
    """Run the engine and check what must hold for every answer: short summaries, no identifiers."""
    result = engine.suggest(PatientData(hook, "p1", (PATIENT, *resources), tuple(drafts), tuple(selections)))
    for advice in result.advice:
        assert len(advice.summary) < 140
        assert advice.rule_id and advice.citation and 0 < advice.confidence <= 1
        texts = [advice.summary, advice.rationale, *(e.description for e in advice.evidence)]
        assert not any(word in text for text in texts for word in ("Quillfeather", "Odalys", "MRN-771234"))
    assert list(result.inputs_used) == sorted(set(result.inputs_used))
    return result


def only(result: AdviceSet) -> Advice:
    (advice,) = result.advice
    return advice


def action_of(advice: Advice) -> ProposedAction:
    (suggestion,) = advice.suggestions
    assert suggestion.recommended
    (action,) = suggestion.actions
    return action


# Renal dose limits


def test_metformin_below_egfr_30_is_critical_with_a_delete(engine):
    advice = only(review(engine, [order("d1")], [egfr(25, obs_id="e1")]))
    assert advice.indicator == "critical"
    assert advice.rule_id == "metformin-egfr-below-30"
    assert advice.summary == f"Metformin contraindicated: eGFR 25 mL/min/1.73m2 ({day(10)})"
    assert advice.citation.startswith("FDA Drug Safety Communication")
    assert advice.confidence == 0.95
    assert advice.source == SOURCE
    action = action_of(advice)
    assert (action.type, action.resource_id, action.resource) == ("delete", "MedicationRequest/d1", None)
    assert advice.suggestions[0].label == "Cancel metformin order"
    assert [e.reference for e in advice.evidence] == ["Observation/e1", "MedicationRequest/d1"]
    assert advice.evidence[0].description == f"eGFR 25 mL/min/1.73m2 on {day(10)}"


def test_metformin_2000_mg_a_day_at_egfr_38_is_capped_to_1000(engine):
    draft = order("d1", dose_mg=1000, per_day=2)
    advice = only(review(engine, [draft], [egfr(38)]))
    assert (advice.indicator, advice.rule_id) == ("warning", "metformin-egfr-30-45")
    action = action_of(advice)
    assert action.type == "update"
    updated = action.resource
    assert daily_dose_mg(updated) == 1000
    (dosage,) = updated["dosageInstruction"]
    assert dosage["doseAndRate"][0]["doseQuantity"] == {
        "value": 500,
        "unit": "mg",
        "system": "http://unitsofmeasure.org",
        "code": "mg",
    }
    assert dosage["timing"]["repeat"] == {"frequency": 2, "period": 1, "periodUnit": "d"}
    assert dosage["text"] == "500 mg twice daily"
    assert dosage["route"] == {"text": "oral"}
    kept = ("resourceType", "id", "status", "intent", "subject", "medicationCodeableConcept")
    assert {k: updated[k] for k in kept} == {k: draft[k] for k in kept}
    assert draft["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 1000  # not mutated
    assert "2000 mg/day" in advice.evidence[1].description


def test_metformin_already_within_the_cap_gets_no_card(engine):
    assert review(engine, [order("d1", dose_mg=500, per_day=1)], [egfr(38)]).advice == ()


def test_an_unreadable_dose_warns_without_proposing_a_new_one(engine):
    draft = order("d1") | {"dosageInstruction": [{"text": "as directed"}]}
    advice = only(review(engine, [draft], [egfr(38)]))
    assert advice.indicator == "warning"
    assert advice.suggestions == ()
    assert advice.confidence < 0.9
    assert "could not be read" in advice.rationale


def test_gabapentin_dose_cap_follows_the_egfr_band(engine):
    advice = only(review(engine, [order("g1", GABAPENTIN, dose_mg=600, per_day=3)], [egfr(20)]))
    assert advice.rule_id == "gabapentin-egfr-15-30"
    assert daily_dose_mg(action_of(advice).resource) <= 700


def test_an_nsaid_at_egfr_below_30_names_the_drug(engine):
    advice = only(review(engine, [order("n1", IBUPROFEN, dose_mg=400, per_day=3)], [egfr(22)]))
    assert advice.rule_id == "nsaid-egfr-below-30"
    assert advice.summary.startswith("Avoid ibuprofen (NSAID): eGFR 22")


def test_the_latest_egfr_wins_over_an_older_lower_one(engine):
    resources = [egfr(75, days_ago=5, obs_id="new"), egfr(22, days_ago=400, obs_id="old")]
    result = review(engine, [order("d1")], resources)
    assert result.advice == ()
    assert "Observation/new" in result.inputs_used
    assert "Observation/old" not in result.inputs_used


def test_the_latest_egfr_wins_over_an_older_higher_one(engine):
    resources = [egfr(80, days_ago=90, obs_id="old"), egfr(25, days_ago=3, obs_id="new")]
    assert only(review(engine, [order("d1")], resources)).evidence[0].reference == "Observation/new"


def test_time_of_day_orders_two_results_of_the_same_day(engine):
    morning = egfr(25, obs_id="am") | {"effectiveDateTime": "2026-11-20T08:00:00+00:00"}
    evening = egfr(70, obs_id="pm") | {"effectiveDateTime": "2026-11-20T18:30:00Z"}
    result = review(engine, [order("d1")], [evening, morning])
    assert result.advice == ()
    assert "Observation/pm" in result.inputs_used


def test_voided_egfr_results_are_ignored(engine):
    wrong = egfr(15, days_ago=1, obs_id="wrong", status="entered-in-error")
    cancelled = egfr(12, days_ago=1, obs_id="cancelled", status="cancelled")
    result = review(engine, [order("d1")], [wrong, cancelled, egfr(80, days_ago=30)])
    assert result.advice == ()
    assert "Observation/wrong" not in result.inputs_used


def test_a_stale_egfr_lowers_confidence_and_says_so(engine):
    fresh = only(review(engine, [order("d1")], [egfr(25, days_ago=10)]))
    stale = only(review(engine, [order("d1")], [egfr(25, days_ago=500)]))
    assert stale.indicator == fresh.indicator == "critical"
    assert stale.confidence < fresh.confidence
    assert "over 365 days old" in stale.rationale
    assert "days old" not in fresh.rationale


def test_the_injected_clock_decides_staleness():
    later = MedicationSafetyEngine(
        SOURCE, load_medication_knowledge(), clock=lambda: NOW + timedelta(days=400)
    )
    assert "over 365 days old" in only(review(later, [order("d1")], [egfr(25, days_ago=10)])).rationale


# Interacting pairs and duplicate therapy


def test_warfarin_with_a_new_nsaid_is_a_bleeding_warning(engine):
    result = review(
        engine, [order("n1", IBUPROFEN, dose_mg=600, per_day=3)], [active("w1", WARFARIN), egfr(80)]
    )
    advice = only(result)
    assert (advice.indicator, advice.rule_id) == ("warning", "warfarin-nsaid")
    assert advice.summary == "Bleeding risk: warfarin with ibuprofen"
    assert action_of(advice).resource_id == "MedicationRequest/n1"
    assert advice.suggestions[0].label == "Cancel ibuprofen order"
    assert [e.reference for e in advice.evidence] == ["MedicationRequest/n1", "MedicationRequest/w1"]
    assert advice.evidence[1].description == "warfarin active medication"


def test_two_interacting_new_orders_give_one_card_on_the_drug_to_stop(engine):
    drafts = [order("w1", WARFARIN, dose_mg=5, per_day=1), order("n1", IBUPROFEN, dose_mg=600, per_day=3)]
    advice = only(review(engine, drafts, [egfr(80)]))
    assert advice.rule_id == "warfarin-nsaid"
    assert action_of(advice).resource_id == "MedicationRequest/n1"


def test_clarithromycin_with_simvastatin_is_critical(engine):
    advice = only(
        review(engine, [order("c1", CLARITHROMYCIN, dose_mg=500, per_day=2)], [active("s1", SIMVASTATIN)])
    )
    assert (advice.indicator, advice.rule_id) == ("critical", "simvastatin-clarithromycin")
    assert advice.summary == "Contraindicated: simvastatin with clarithromycin (myopathy risk)"
    assert action_of(advice).resource_id == "MedicationRequest/c1"


def test_a_duplicate_statin_is_flagged(engine):
    advice = only(
        review(engine, [order("a1", ATORVASTATIN, dose_mg=20, per_day=1)], [active("s1", SIMVASTATIN)])
    )
    assert (advice.indicator, advice.rule_id) == ("warning", "duplicate-statin")
    assert advice.summary == "Duplicate therapy: atorvastatin with simvastatin (statins)"
    assert action_of(advice).resource_id == "MedicationRequest/a1"


def test_one_card_per_rule_and_order_naming_every_partner(engine):
    resources = [active("s1", SIMVASTATIN), active("r1", ROSUVASTATIN)]
    advice = only(review(engine, [order("a1", ATORVASTATIN, dose_mg=20, per_day=1)], resources))
    assert {e.reference for e in advice.evidence} == {
        "MedicationRequest/a1",
        "MedicationRequest/s1",
        "MedicationRequest/r1",
    }
    assert "simvastatin, rosuvastatin" in advice.summary


def test_the_same_order_sent_as_draft_and_prefetched_is_not_its_own_partner(engine):
    draft = order("a1", ATORVASTATIN, dose_mg=20, per_day=1)
    assert review(engine, [draft], [draft | {"status": "active"}]).advice == ()


# Allergies


def test_penicillin_allergy_with_amoxicillin_is_critical(engine):
    result = review(engine, [order("x1", AMOXICILLIN, dose_mg=500, per_day=3)], [allergy("pen")])
    advice = only(result)
    assert (advice.indicator, advice.rule_id) == ("critical", "penicillin-allergy")
    assert advice.summary == "Allergy to penicillins conflicts with the amoxicillin order"
    assert action_of(advice).resource_id == "MedicationRequest/x1"
    assert "AllergyIntolerance/pen" in result.inputs_used


def test_an_allergy_to_the_ordered_ingredient_itself(engine):
    amoxicillin_allergy = allergy("amox", (RXNORM, "723", "amoxicillin"), criticality="low")
    advice = only(review(engine, [order("x1", AMOXICILLIN, dose_mg=500, per_day=3)], [amoxicillin_allergy]))
    assert (advice.indicator, advice.rule_id) == ("warning", "documented-drug-allergy")


def test_a_text_only_sulfa_allergy_is_matched_and_its_free_text_not_repeated(engine):
    sulfa = allergy("sulfa", None, text="Sulfa drugs - hives (told by Dr Zebulon)", criticality="low")
    advice = only(review(engine, [order("t1", SULFAMETHOXAZOLE, dose_mg=800, per_day=2)], [sulfa]))
    assert (advice.indicator, advice.rule_id) == ("warning", "sulfonamide-antibiotic-allergy")
    assert not any(
        "Zebulon" in text for text in (advice.rationale, *(e.description for e in advice.evidence))
    )


def test_a_word_inside_another_word_does_not_match(engine):
    nystatin = allergy("nys", None, text="Nystatin")
    assert review(engine, [order("a1", ATORVASTATIN, dose_mg=20, per_day=1)], [nystatin]).advice == ()


@pytest.mark.parametrize(("verification", "clinical"), [("refuted", "active"), ("confirmed", "resolved")])
def test_a_refuted_or_resolved_allergy_is_ignored(engine, verification, clinical):
    old = allergy("pen", verification=verification, clinical=clinical)
    result = review(engine, [order("x1", AMOXICILLIN, dose_mg=500, per_day=3)], [old])
    assert result.advice == ()
    assert "AllergyIntolerance/pen" not in result.inputs_used


def test_an_unconfirmed_allergy_lowers_confidence(engine):
    confirmed = only(review(engine, [order("x1", AMOXICILLIN)], [allergy("pen")]))
    unconfirmed = only(
        review(engine, [order("x1", AMOXICILLIN)], [allergy("pen", verification="unconfirmed")])
    )
    assert unconfirmed.confidence < confirmed.confidence


# Which orders are reviewed, and how medications are recognised


def test_order_select_reviews_only_the_selected_order(engine):
    result = review(
        engine,
        [order("d1"), order("d2")],
        [egfr(25)],
        hook="order-select",
        selections=["MedicationRequest/d2"],
    )
    assert [action_of(a).resource_id for a in result.advice] == ["MedicationRequest/d2"]


def test_order_select_checks_the_selection_against_unselected_drafts(engine):
    drafts = [order("w1", WARFARIN, dose_mg=5, per_day=1), order("n1", IBUPROFEN, dose_mg=600, per_day=3)]
    result = review(engine, drafts, hook="order-select", selections=["MedicationRequest/w1"])
    advice = only(result)
    assert advice.rule_id == "warfarin-nsaid"
    assert action_of(advice).resource_id == "MedicationRequest/w1"


def test_a_medication_named_only_in_text_is_recognised(engine):
    draft = order("d1") | {"medicationCodeableConcept": {"text": "Metformin HCl 1000 mg tablet"}}
    assert only(review(engine, [draft], [egfr(25)])).rule_id == "metformin-egfr-below-30"


def test_a_contained_medication_is_resolved(engine):
    draft = order("d1") | {
        "medicationCodeableConcept": None,
        "medicationReference": {"reference": "#med"},
        "contained": [
            {
                "resourceType": "Medication",
                "id": "med",
                "code": {"coding": [{"system": RXNORM, "code": "6809"}]},
            }
        ],
    }
    del draft["medicationCodeableConcept"]
    assert only(review(engine, [draft], [egfr(25)])).rule_id == "metformin-egfr-below-30"


def test_an_unresolvable_medication_reference_is_skipped(engine):
    draft = order("d1") | {"medicationReference": {"reference": "Medication/missing"}}
    del draft["medicationCodeableConcept"]
    result = review(engine, [draft, order("d2")], [egfr(25)])
    assert [action_of(a).resource_id for a in result.advice] == ["MedicationRequest/d2"]


def test_a_clean_chart_gets_nothing(engine):
    result = review(engine, [order("d1", dose_mg=500, per_day=2)], [egfr(92), active("s1", SIMVASTATIN)])
    assert result.advice == ()
    assert "MedicationRequest/d1" in result.inputs_used


def test_critical_cards_come_first(engine):
    drafts = [order("n1", IBUPROFEN, dose_mg=600, per_day=3), order("d1")]
    indicators = [a.indicator for a in review(engine, drafts, [active("w1", WARFARIN), egfr(25)]).advice]
    assert indicators[0] == "critical" and "warning" in indicators
    assert indicators == sorted(indicators, key=["critical", "warning", "info"].index)


# Inputs used, and scale


def test_inputs_used_are_what_the_decision_rested_on(engine):
    resources = [
        egfr(25, obs_id="e1"),
        egfr(60, days_ago=300, obs_id="e0"),
        glucose("g1"),
        active("w1", WARFARIN),
    ]
    result = review(engine, [order("d1")], resources)
    assert result.inputs_used == ("MedicationRequest/d1", "MedicationRequest/w1", "Observation/e1")


def test_labs_are_not_an_input_when_no_renal_rule_applies(engine):
    result = review(engine, [order("a1", ATORVASTATIN, dose_mg=20, per_day=1)], [egfr(25, obs_id="e1")])
    assert result.advice == ()
    assert "Observation/e1" not in result.inputs_used


def test_ten_thousand_observations_change_nothing_but_the_work(engine):
    noise = [glucose(f"g{i}", days_ago=i % 700) for i in range(9_990)]
    older_egfrs = [egfr(90, days_ago=20 + i, obs_id=f"old{i}") for i in range(10)]
    result = review(engine, [order("d1")], [*noise, *older_egfrs, egfr(25, days_ago=2, obs_id="signal")])
    assert [a.rule_id for a in result.advice] == ["metformin-egfr-below-30"]
    assert result.inputs_used == ("MedicationRequest/d1", "Observation/signal")


# Dose reading


@pytest.mark.parametrize(
    ("dosage", "expected"),
    [
        (
            {
                "timing": {"code": {"coding": [{"code": "BID"}]}},
                "doseAndRate": [{"doseQuantity": {"value": 500, "unit": "mg"}}],
            },
            1000,
        ),
        (
            {
                "timing": {"repeat": {"frequency": 1, "period": 12, "periodUnit": "h"}},
                "doseAndRate": [{"doseQuantity": {"value": 1, "code": "g"}}],
            },
            2000,
        ),
        (
            {
                "timing": {"repeat": {"frequency": 1, "period": 0, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "mg"}}],
            },
            None,
        ),
        (
            {
                "timing": {"repeat": {"frequency": 2, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": 5, "unit": "tablet"}}],
            },
            None,
        ),
    ],
)
def test_daily_dose_reading(dosage, expected):
    assert daily_dose_mg({"dosageInstruction": [dosage]}) == expected


# The knowledge file


def broken_knowledge(tmp_path: Path, edit) -> Path:
    return edited_copy(DEFAULT_PATH, tmp_path / "broken.yaml", edit)


def test_a_rule_without_a_source_does_not_load(tmp_path: Path):
    path = broken_knowledge(tmp_path, lambda k: k["interactions"][0].pop("source"))
    with pytest.raises(InvalidFile, match=r"interactions\.0\.source"):
        load_medication_knowledge(path)


def test_a_rule_naming_an_unknown_drug_does_not_load(tmp_path: Path):
    path = broken_knowledge(tmp_path, lambda k: k["renal_rules"][0].update(drug="metfromin"))
    with pytest.raises(InvalidFile, match=r"renal_rules.*metformin-egfr-below-30.*'metfromin'"):
        load_medication_knowledge(path)


def test_a_summary_with_an_unknown_placeholder_does_not_load(tmp_path: Path):
    path = broken_knowledge(tmp_path, lambda k: k["interactions"][0].update(summary="{patient} on {first}"))
    with pytest.raises(InvalidFile, match=r"interactions\.0\.summary.*patient"):
        load_medication_knowledge(path)


def test_every_shipped_rule_cites_a_source():
    assert all(rule.source.strip() for rule in load_medication_knowledge().rules())
