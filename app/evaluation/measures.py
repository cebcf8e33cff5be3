"""The measures model cards report: proportions with Wilson intervals, AUROC, and calibration bands."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from collections.abc import Sequence

from app.governance.measured import CalibrationBand, Measure

Z_95 = 1.959964


def proportion(measure: str, scope: str, numerator: int, denominator: int, **slice_: str) -> Measure:
    """A proportion with its Wilson score 95 % interval (sound for small counts and 0 or 1)."""
    if denominator == 0:
        return Measure(measure=measure, scope=scope, value=None, numerator=0, denominator=0, **slice_)
    p = numerator / denominator
    centre = (p + Z_95**2 / (2 * denominator)) / (1 + Z_95**2 / denominator)
    half = (Z_95 / (1 + Z_95**2 / denominator)) * math.sqrt(
        p * (1 - p) / denominator + Z_95**2 / (4 * denominator**2)
    )
    return Measure(
        measure=measure,
        scope=scope,
        value=round(p, 4),
        ci_low=round(max(0.0, centre - half), 4),
        ci_high=round(min(1.0, centre + half), 4),
        numerator=numerator,
        denominator=denominator,
        **slice_,
    )


def classification(
    scope: str, predicted: Sequence[bool], actual: Sequence[bool], **slice_: str
) -> list[Measure]:
    """Sensitivity, positive predictive value and specificity of binary predictions."""
    pairs = list(zip(predicted, actual, strict=True))
    tp = sum(p and a for p, a in pairs)
    fp = sum(p and not a for p, a in pairs)
    fn = sum(a and not p for p, a in pairs)
    tn = len(pairs) - tp - fp - fn
    return [
        proportion("sensitivity", scope, tp, tp + fn, **slice_),
        proportion("ppv", scope, tp, tp + fp, **slice_),
        proportion("specificity", scope, tn, tn + fp, **slice_),
    ]


def auroc(scope: str, scores: Sequence[float], actual: Sequence[bool], **slice_: str) -> Measure:
    """Area under the ROC curve as the Mann-Whitney probability (ties count one half), with the
    Hanley-McNeil standard error for its interval."""
    positives = [s for s, a in zip(scores, actual, strict=True) if a]
    negatives = [s for s, a in zip(scores, actual, strict=True) if not a]
    n_pos, n_neg = len(positives), len(negatives)
    if not n_pos or not n_neg:
        return Measure(measure="auroc", scope=scope, value=None, denominator=n_pos + n_neg, **slice_)
    ranked = sorted(negatives)
    wins = sum(_below(ranked, score) + 0.5 * _equal(ranked, score) for score in positives)
    area = wins / (n_pos * n_neg)
    q1, q2 = area / (2 - area), 2 * area**2 / (1 + area)
    variance = (area * (1 - area) + (n_pos - 1) * (q1 - area**2) + (n_neg - 1) * (q2 - area**2)) / (
        n_pos * n_neg
    )
    se = math.sqrt(max(variance, 0.0))
    return Measure(
        measure="auroc",
        scope=scope,
        value=round(area, 4),
        ci_low=round(max(0.0, area - Z_95 * se), 4),
        ci_high=round(min(1.0, area + Z_95 * se), 4),
        denominator=n_pos + n_neg,
        **slice_,
    )


def calibration(
    scores: Sequence[float], actual: Sequence[bool], bands: Sequence[tuple[int, int]]
) -> list[CalibrationBand]:
    found = []
    for low, high in bands:
        outcomes = [a for s, a in zip(scores, actual, strict=True) if low <= s <= high]
        events = sum(outcomes)
        rate = round(events / len(outcomes), 4) if outcomes else None
        found.append(
            CalibrationBand(band=f"{low}-{high}", cases=len(outcomes), events=events, observed_rate=rate)
        )
    return found


def _below(ranked: list[float], score: float) -> int:
    return bisect_left(ranked, score)


def _equal(ranked: list[float], score: float) -> int:
    return bisect_right(ranked, score) - bisect_left(ranked, score)
