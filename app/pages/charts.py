"""Geometry for the dashboard's inline SVG charts, computed server-side (the CSP allows no script
that draws, and a narrow EHR sidebar needs no library): a rate-over-time line chart and a bar chart.
The templates draw them and repeat the numbers in a table for screen readers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 320, 160, 34, 30, 10


@dataclass
class Series:
    name: str
    css_class: str
    points: list[tuple[float, float]] = field(default_factory=list)

    @property
    def polyline(self) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in self.points)


@dataclass
class LineChart:
    width: int
    height: int
    series: list[Series]
    x_labels: list[tuple[float, str]]
    y_ticks: list[tuple[float, str]]
    plot_left: int = PAD_LEFT
    plot_bottom: int = HEIGHT - PAD_BOTTOM


@dataclass
class Bar:
    label: str
    count: int
    width_percent: float


def rate_chart(weeks: list[dict]) -> LineChart:
    """Acceptance and override rate (share of decided cards) per ISO week; undecided weeks are gaps."""
    plot_width = WIDTH - PAD_LEFT - 10
    plot_height = HEIGHT - PAD_TOP - PAD_BOTTOM
    step = plot_width / max(len(weeks) - 1, 1)
    accepted, overridden = Series("Accepted", "accepted"), Series("Overridden", "overridden")
    labels = []
    for index, week in enumerate(weeks):
        x = PAD_LEFT + (step * index if len(weeks) > 1 else plot_width / 2)
        labels.append((x, week["week"].split("-")[1]))
        decided = week["accepted"] + week["overridden"]
        if decided:
            for series, count in ((accepted, week["accepted"]), (overridden, week["overridden"])):
                series.points.append((x, PAD_TOP + plot_height * (1 - count / decided)))
    ticks = [(PAD_TOP + plot_height * (1 - share), f"{int(share * 100)}%") for share in (0, 0.5, 1)]
    return LineChart(WIDTH, HEIGHT, [accepted, overridden], labels, ticks)


def bars(counts: dict[str, int]) -> list[Bar]:
    """Horizontal bars scaled to the largest count."""
    largest = max(counts.values(), default=0)
    return [Bar(label, count, round(100 * count / largest, 1)) for label, count in counts.items() if largest]
