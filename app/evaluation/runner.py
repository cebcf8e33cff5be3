"""Run one model's engine over its cohort and compute the measures its card promises.

The engine is evaluated on its own, with the clock fixed at the cohort's date, so the same seed
always yields the same figures; the guardrails are governance, measured on the safety dashboard.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from app.engines.base import Engine, ModelUnavailable
from app.engines.discharge_summary import DischargeSummaryEngine
from app.engines.external import ExternalModelEngine
from app.engines.lace_knowledge import load_lace_knowledge
from app.engines.medication_safety import MedicationSafetyEngine, load_medication_knowledge
from app.engines.problem_list_gaps import ProblemListGapsEngine
from app.engines.problem_list_knowledge import load_problem_list_knowledge
from app.engines.readmission_lace import ReadmissionLaceEngine
from app.evaluation.cohorts import COHORT_DATE, Case, Cohort
from app.evaluation.measures import auroc, calibration, classification
from app.governance.measured import CalibrationBand, Measure
from app.governance.model_card import ModelCard
from app.serving.catalogue import knowledge_path
from cds_hooks.advice import AdviceSet, CardSource

EVALUATION_SOURCE = CardSource("evaluation", "urn:countersign:evaluation", "evaluation", "Evaluation")
DEMOGRAPHIC_VARIABLES = ("sex", "age_band", "race", "ethnicity")
LACE_BANDS = ((0, 4), (5, 9), (10, 14), (15, 19))
FACT_SEPARATOR = "|"


@dataclass(frozen=True)
class Evaluation:
    """Everything ``countersign eval`` writes into a card's measured section."""

    measures: tuple[Measure, ...]
    subgroups: tuple[Measure, ...]
    calibration: tuple[CalibrationBand, ...] = ()


@dataclass(frozen=True)
class Prediction:
    case: Case
    scopes: frozenset[str]
    score: float | None = None


def _medication_safety(model: ModelCard) -> tuple[Engine, Callable[[str], str]]:
    knowledge = load_medication_knowledge(knowledge_path(model))
    renal = {rule.id for rule in knowledge.renal_rules}
    interactions = {rule.id for rule in knowledge.interactions}

    def scope(rule_id: str) -> str:
        return "renal" if rule_id in renal else "interaction" if rule_id in interactions else rule_id

    return MedicationSafetyEngine(EVALUATION_SOURCE, knowledge, clock=lambda: COHORT_DATE), scope


def _problem_list_gaps(model: ModelCard) -> tuple[Engine, Callable[[str], str]]:
    return ProblemListGapsEngine(EVALUATION_SOURCE, load_problem_list_knowledge(knowledge_path(model))), str


def _readmission_risk(model: ModelCard) -> tuple[Engine, Callable[[str], str]]:
    knowledge = load_lace_knowledge(knowledge_path(model))
    return ReadmissionLaceEngine(
        EVALUATION_SOURCE, knowledge, clock=lambda: COHORT_DATE
    ), lambda _: "readmitted"


def _discharge_summary(_model: ModelCard) -> tuple[Engine, Callable[[str], str]]:
    """The offline extractive summariser: what runs when no language model is configured."""
    return DischargeSummaryEngine(EVALUATION_SOURCE, None, clock=lambda: COHORT_DATE), str


ENGINES: dict[str, Callable[[ModelCard], tuple[Engine, Callable[[str], str]]]] = {
    "medication-safety": _medication_safety,
    "problem-list-gaps": _problem_list_gaps,
    "readmission-risk": _readmission_risk,
    "discharge-summary-draft": _discharge_summary,
}
#: What a finding of an external model counts as, by the service whose cohort it is evaluated on.
EXTERNAL_SCOPES: dict[str, Callable[[str], str]] = {"readmission-risk": lambda _: "readmitted"}


def evaluable(model: ModelCard) -> bool:
    return model.id in ENGINES and (model.endpoint is None or model.id in EXTERNAL_SCOPES)


def _engine_for(model: ModelCard) -> tuple[Engine, Callable[[str], str]]:
    """The version's own engine: its knowledge file, or its endpoint for a hospital's own model
    (then every cohort case is one inference call on the hospital's server)."""
    if model.endpoint is not None:
        engine = ExternalModelEngine(model.endpoint, EVALUATION_SOURCE, clock=lambda: COHORT_DATE)
        return engine, EXTERNAL_SCOPES[model.id]
    return ENGINES[model.id](model)


def evaluate(
    model: ModelCard, cohort: Cohort, progress: Callable[[int], None] = lambda _: None
) -> Evaluation:
    """A model that cannot answer a case (an external one timing out) counts as raising nothing."""
    engine, scope_of = _engine_for(model)
    predictions = []
    for case in cohort.cases:
        result = _suggestion(engine, case)
        if any(FACT_SEPARATOR in key for key in case.truth):
            predictions.extend(_fact_predictions(case, result))
        else:
            score = engine.score(case.data).total if isinstance(engine, ReadmissionLaceEngine) else None
            predictions.append(Prediction(case, frozenset(scope_of(a.rule_id) for a in result.advice), score))
        progress(1)
    return Evaluation(
        measures=tuple(_measures(predictions)),
        subgroups=tuple(_subgroups(predictions)),
        calibration=tuple(_calibration(predictions)),
    )


def _suggestion(engine: Engine, case: Case) -> AdviceSet:
    try:
        return engine.suggest(case.data)
    except ModelUnavailable:
        return AdviceSet()


def _fact_predictions(case: Case, result: AdviceSet) -> Iterator[Prediction]:
    """For a summariser, each fact (``scope|reference``) is a prediction: did the draft cite it?"""
    cited = {item.reference for advice in result.advice for item in advice.evidence}
    for key, actual in case.truth.items():
        scope, reference = key.split(FACT_SEPARATOR, 1)
        fact = dataclasses.replace(case, truth={scope: actual})
        yield Prediction(fact, frozenset({scope}) if reference in cited else frozenset())


def _measures(predictions: list[Prediction], **slice_: str) -> list[Measure]:
    scopes = sorted({scope for p in predictions for scope in p.case.truth})
    found = []
    for scope in scopes:
        relevant = [p for p in predictions if scope in p.case.truth]
        found += classification(
            scope, [scope in p.scopes for p in relevant], [p.case.truth[scope] for p in relevant], **slice_
        )
    if len(scopes) > 1:
        found += classification(
            "overall",
            [bool(p.scopes) for p in predictions],
            [any(p.case.truth.values()) for p in predictions],
            **slice_,
        )
    scored = [p for p in predictions if p.score is not None]
    if scored:
        found.append(
            auroc("score", [p.score for p in scored], [bool(p.case.outcome) for p in scored], **slice_)
        )
    return found


def _subgroups(predictions: list[Prediction]) -> list[Measure]:
    found = []
    for variable in DEMOGRAPHIC_VARIABLES:
        for group in sorted({p.case.demographics[variable] for p in predictions}):
            members = [p for p in predictions if p.case.demographics[variable] == group]
            found += [m for m in _measures(members, variable=variable, group=group) if _headline(m, members)]
    return found


def _headline(measure: Measure, members: list[Prediction]) -> bool:
    """Per subgroup, the overall figures (or the only scope's) keep the fairness table readable."""
    scopes = {scope for p in members for scope in p.case.truth}
    wanted = "overall" if len(scopes) > 1 else next(iter(scopes), "")
    return measure.scope in (wanted, "score") and measure.measure in ("sensitivity", "ppv", "auroc")


def _calibration(predictions: list[Prediction]) -> list[CalibrationBand]:
    scored = [p for p in predictions if p.score is not None]
    if not scored:
        return []
    return calibration([p.score for p in scored], [bool(p.case.outcome) for p in scored], LACE_BANDS)
