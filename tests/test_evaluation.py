"""Evaluation: measures computed right, cards carry only figures `countersign eval` produced."""

from __future__ import annotations

import shutil

import pytest
from click.testing import CliRunner

from app.cli import main
from app.evaluation.cohorts import generate
from app.evaluation.measures import auroc, calibration, classification, proportion
from app.evaluation.runner import evaluate
from app.governance.model_card import CARDS_DIRECTORY, load_model_cards


def test_wilson_interval_matches_the_published_formula():
    measure = proportion("sensitivity", "x", 8, 10)
    assert measure.value == 0.8
    assert (measure.ci_low, measure.ci_high) == (0.4902, 0.9433)
    assert proportion("ppv", "x", 0, 0).value is None


def test_classification_counts_each_cell():
    sensitivity, ppv, specificity = classification(
        "x", predicted=[True, True, False, False, True], actual=[True, False, True, False, True]
    )
    assert (sensitivity.numerator, sensitivity.denominator) == (2, 3)
    assert (ppv.numerator, ppv.denominator) == (2, 3)
    assert (specificity.numerator, specificity.denominator) == (1, 2)


def test_auroc_is_one_for_a_perfect_score_and_one_half_for_a_constant_one():
    assert auroc("s", [1, 2, 3, 4], [False, False, True, True]).value == 1.0
    assert auroc("s", [5, 5, 5, 5], [False, True, False, True]).value == 0.5
    assert auroc("s", [3, 1], [False, True]).value == 0.0


def test_calibration_reports_observed_rates_per_band():
    bands = calibration([1, 2, 11, 12, 13], [False, True, True, True, False], [(0, 9), (10, 19)])
    assert [(b.band, b.cases, b.events, b.observed_rate) for b in bands] == [
        ("0-9", 2, 1, 0.5),
        ("10-19", 3, 2, 0.6667),
    ]


def test_the_same_seed_gives_the_same_cohort_and_another_seed_a_different_one():
    assert generate("readmission-risk", 50, 1).sha256 == generate("readmission-risk", 50, 1).sha256
    assert generate("readmission-risk", 50, 1).sha256 != generate("readmission-risk", 50, 2).sha256


@pytest.mark.parametrize("model", list(load_model_cards()), ids=lambda card: card.key)
def test_every_figure_on_the_card_is_reproduced_by_rerunning_the_evaluation(model):
    """The card's numbers are exactly what the recorded command computes on the recorded data."""
    measured = model.measured
    assert measured is not None, f"run `countersign eval {model.id} --version {model.version}`"
    cohort = generate(model.id, measured.cohort_size, measured.seed)
    assert cohort.sha256 == measured.dataset_sha256
    evaluation = evaluate(model, cohort)
    assert evaluation.measures == measured.measures
    assert evaluation.subgroups == measured.subgroups
    assert evaluation.calibration == measured.calibration
    assert {m.variable for m in measured.subgroups} == {"sex", "age_band", "race", "ethnicity"}


def test_every_card_in_the_repository_has_its_measured_section():
    assert all(card.measured is not None for card in load_model_cards())


def test_the_lace_score_discriminates_and_its_bands_are_ordered():
    measured = load_model_cards().card("readmission-risk", "1.0.0").measured
    [area] = [m for m in measured.measures if m.measure == "auroc"]
    assert area.value > 0.55
    rates = [band.observed_rate for band in measured.calibration if band.cases >= 30]
    assert rates == sorted(rates)


def test_eval_writes_the_measured_section_and_keeps_the_rest_of_the_card(tmp_path):
    cards = tmp_path / "cards"
    shutil.copytree(CARDS_DIRECTORY, cards)
    path = cards / "readmission-risk-1.0.0.yaml"
    before = path.read_text()
    result = CliRunner().invoke(
        main, ["eval", "readmission-risk", "--size", "120", "--seed", "7", "--cards-dir", str(cards)]
    )
    assert result.exit_code == 0, result.output
    assert "readmission-risk 1.0.0: evaluating" in result.output
    card = load_model_cards(cards).card("readmission-risk", "1.0.0")
    assert card.measured.cohort_size == 120
    assert card.measured.command == "countersign eval readmission-risk --version 1.0.0 --size 120 --seed 7"
    assert card.source_attributes.internal_validity.startswith(
        "Measured by `countersign eval readmission-risk"
    )
    assert path.read_text().splitlines()[0] == before.splitlines()[0]  # the header comment survives
    original = load_model_cards(CARDS_DIRECTORY).card("readmission-risk", "1.0.0")
    unchanged = {"measured": True, "source_attributes": {"internal_validity", "internal_fairness"}}
    assert card.model_dump(exclude=unchanged) == original.model_dump(exclude=unchanged)


def test_eval_of_an_unknown_model_is_a_usage_error():
    result = CliRunner().invoke(main, ["eval", "no-such-model"])
    assert result.exit_code == 2
    known = "discharge-summary-draft, medication-safety, problem-list-gaps, readmission-risk"
    assert f"known: {known}" in result.output
