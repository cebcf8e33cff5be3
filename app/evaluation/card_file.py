"""Writing evaluation results into a model card file, keeping its comments and layout.

The measured section and the two HTI-1 statements that summarise it (internal validity and
internal fairness) are the only parts ``countersign eval`` touches; everything else in the card
is the governance committee's text and stays byte for byte.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.scalarstring import FoldedScalarString

from app.evaluation.cohorts import Cohort
from app.evaluation.runner import Evaluation
from app.files.validated import load_validated
from app.governance.measured import Measure
from app.governance.model_card import MeasuredPerformance, ModelCard


def measured_section(cohort: Cohort, evaluation: Evaluation, command: str, on: date) -> MeasuredPerformance:
    return MeasuredPerformance(
        dataset=cohort.name,
        dataset_sha256=cohort.sha256,
        cohort_size=len(cohort.cases),
        seed=cohort.seed,
        evaluated_on=on,
        command=command,
        measures=evaluation.measures,
        subgroups=evaluation.subgroups,
        calibration=evaluation.calibration,
    )


def write_measured(path: Path, measured: MeasuredPerformance) -> ModelCard:
    """Update the card file in place; the result must still load, or the file is left as it was."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never re-wrap the committee's text
    yaml.indent(mapping=2, sequence=4, offset=2)
    original = path.read_text()
    content = yaml.load(original)
    content["source_attributes"]["internal_validity"] = _folded(validity_statement(measured))
    content["source_attributes"]["internal_fairness"] = _folded(fairness_statement(measured))
    content["measured"] = _one_row_per_figure(measured.model_dump(mode="json"))
    with path.open("w") as handle:
        yaml.dump(content, handle)
    try:
        return load_validated(path, ModelCard)
    except Exception:
        path.write_text(original)
        raise


def _folded(text: str, width: int = 100) -> FoldedScalarString:
    """Long statements as folded blocks wrapped at ``width``, like the hand-written ones."""
    folded = FoldedScalarString(text)
    folded.fold_pos = []
    line_start = 0
    for position, character in enumerate(text):
        if character == " " and position - line_start > width:
            previous = text.rfind(" ", line_start, position)
            cut = previous if previous > line_start else position
            folded.fold_pos.append(cut)
            line_start = cut + 1
    return folded


def _one_row_per_figure(section: dict) -> dict:
    """Each measure on one line (a flow mapping), so the section reads like a table in review."""
    for key in ("measures", "subgroups", "calibration"):
        rows = []
        for row in section[key]:
            flow = CommentedMap(row)
            flow.fa.set_flow_style()
            rows.append(flow)
        section[key] = rows
    return section


def validity_statement(measured: MeasuredPerformance) -> str:
    headline = "; ".join(_describe(m) for m in measured.measures if m.scope in _headline_scopes(measured))
    return (
        f"Measured by `{measured.command}` on {measured.evaluated_on.isoformat()} "
        f"over {measured.cohort_size} synthetic patients ({measured.dataset}, "
        f"sha256 {measured.dataset_sha256[:12]}…): {headline}. "
        "Every figure, per finding, is in the measured section of this card."
    )


def fairness_statement(measured: MeasuredPerformance) -> str:
    variables = sorted({m.variable for m in measured.subgroups})
    spread = []
    for variable in variables:
        for name in ("sensitivity", "auroc"):
            values = [
                m.value
                for m in measured.subgroups
                if m.variable == variable and m.measure == name and m.value is not None
            ]
            if values:
                spread.append(f"{name} by {variable.replace('_', ' ')} {min(values):.2f}-{max(values):.2f}")
    return (
        f"Measured on the same synthetic cohort by sex, age band, race and ethnicity: {'; '.join(spread)}. "
        "Subgroup figures with their counts and 95 % intervals are in the measured section; "
        "small groups have wide intervals."
    )


def _headline_scopes(measured: MeasuredPerformance) -> set[str]:
    """The overall figures when the model has several findings, else its one finding; and any score."""
    scopes = {m.scope for m in measured.measures}
    return {"overall", "score"} if "overall" in scopes else scopes


def _describe(measure: Measure) -> str:
    interval = f" (95 % CI {measure.ci_low:.2f}-{measure.ci_high:.2f})" if measure.ci_low is not None else ""
    value = "n/a" if measure.value is None else f"{measure.value:.2f}"
    return f"{measure.measure} {value}{interval}"
