"""Geometry of the version comparison's inline SVG charts: grouped vertical bars, one bar per series
in each group (confidence bins x versions; p50 / p95 / mean x versions). Same frame and constants
as the dashboard's charts (``app.pages.charts``), whose horizontal ``bars`` draw the agreement; the
templates draw the shapes (``_comparison_charts.html``) and repeat every number in a table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from app.pages.charts import HEIGHT, PAD_BOTTOM, PAD_LEFT, PAD_TOP, WIDTH

PAD_RIGHT = 10
GROUP_GAP = 0.25
"""The share of each group's width left empty between groups."""


@dataclass(frozen=True)
class Column:
    x: float
    y: float
    width: float
    height: float
    css_class: str
    title: str


@dataclass(frozen=True)
class GroupedBarChart:
    width: int
    height: int
    columns: list[Column]
    x_labels: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    series: list[tuple[str, str]]
    """(name, css class) of each series, for the legend."""
    plot_left: int = PAD_LEFT
    plot_right: int = WIDTH - PAD_RIGHT
    plot_bottom: int = HEIGHT - PAD_BOTTOM


@dataclass(frozen=True)
class SeriesValues:
    name: str
    css_class: str
    values: Sequence[float | None]
    """One value per group; None draws no bar (nothing measured)."""


def grouped_bars(
    groups: Sequence[str], series: Sequence[SeriesValues], tick: Callable[[float], str], unit: str = ""
) -> GroupedBarChart:
    """Bars scaled to the largest value; y ticks at 0, half and the largest, written by ``tick``
    (short: the axis is narrow); each bar's title gives its value with ``unit``."""
    plot_width = WIDTH - PAD_LEFT - PAD_RIGHT
    plot_height = HEIGHT - PAD_TOP - PAD_BOTTOM
    bottom = HEIGHT - PAD_BOTTOM
    largest = max((v for s in series for v in s.values if v is not None), default=0.0)
    group_width = plot_width / max(len(groups), 1)
    bar_width = group_width * (1 - GROUP_GAP) / max(len(series), 1)
    columns, labels = [], []
    for index, group in enumerate(groups):
        left = PAD_LEFT + group_width * index + group_width * GROUP_GAP / 2
        labels.append((round(PAD_LEFT + group_width * (index + 0.5), 1), group))
        for position, one in enumerate(series):
            value = one.values[index]
            if value is None:
                continue
            height = plot_height * value / largest if largest else 0.0
            columns.append(
                Column(
                    round(left + bar_width * position, 1),
                    round(bottom - height, 1),
                    round(bar_width, 1),
                    round(height, 1),
                    one.css_class,
                    f"{one.name}, {group}: {tick(value)}{unit}",
                )
            )
    shares = (0, 0.5, 1) if largest else (0,)
    ticks = [(round(bottom - plot_height * share, 1), tick(largest * share)) for share in shares]
    return GroupedBarChart(WIDTH, HEIGHT, columns, labels, ticks, [(s.name, s.css_class) for s in series])
