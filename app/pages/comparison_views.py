"""A shadow version against the active one on live calls, and one call's card sets side by side.

``/app/models/<id>/compare?shadow=<version>`` shows what ``app.evaluation.comparison.compare``
finds (default: the first version in shadow, against the active one), with its charts; the calls
where the two differ link to ``/app/calls/<hookInstance>``, which shows every card set recorded for
that call with the clinicians' decisions. A built-in service's id is its model's id
(``app.serving.catalogue``), so the model names the service compared.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, render_template, request

from app.evaluation.comparison import DEFAULT_LIMIT, Comparison, Histogram, call_record, compare
from app.governance.lifecycle import active_version, version_statuses
from app.governance.model_card import MODEL_CARDS_KEY
from app.pages.charts import bars
from app.pages.comparison_charts import GroupedBarChart, SeriesValues, grouped_bars
from smart_launch.session import require_role, smart_config

COMPARISON_READERS = ("cmio", "safety-officer", "auditor")
ACTIVE_CLASS, SHADOW_CLASS = "series-active", "series-shadow"


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/models/<model_id>/compare", view_func=model_comparison, methods=["GET"])
    bp.add_url_rule("/calls/<hook_instance>", view_func=hook_call, methods=["GET"])


@require_role(*COMPARISON_READERS)
def model_comparison(model_id: str) -> str:
    versions = current_app.extensions[MODEL_CARDS_KEY].versions(model_id)
    if not versions:
        abort(404)
    limit = request.args.get("limit", DEFAULT_LIMIT, type=int)
    with smart_config().engine.connect() as connection:
        statuses = version_statuses(connection, versions)
        active = active_version(statuses)
        in_shadow = [card.version for card in versions if statuses[card.version] == "shadow"]
        shadow = request.args.get("shadow") or next(iter(in_shadow), None)
        if shadow is not None and shadow not in statuses:
            abort(404)
        comparison = None
        if active is not None and shadow is not None and shadow != active:
            comparison = compare(connection, model_id, active, shadow, limit)
    return render_template(
        "comparison.html",
        card=next(card for card in versions if card.version == (active or versions[-1].version)),
        statuses=statuses,
        active=active,
        shadow=shadow,
        in_shadow=in_shadow,
        comparison=comparison,
        charts=_charts(comparison) if comparison and comparison.calls else None,
        ms=milliseconds,
    )


@require_role(*COMPARISON_READERS)
def hook_call(hook_instance: str) -> str:
    with smart_config().engine.connect() as connection:
        card_sets = call_record(connection, hook_instance)
    if not card_sets:
        abort(404)
    services: dict[str, list] = {}
    for card_set in card_sets:
        services.setdefault(card_set.service_id, []).append(card_set)
    return render_template(
        "call.html", hook_instance=hook_instance, services=services, first=card_sets[0], ms=milliseconds
    )


def _charts(comparison: Comparison) -> dict:
    active = f"{comparison.active_version} (active)"
    shadow = f"{comparison.shadow_version} (shadow)"
    return {
        "agreement": bars(
            {
                "Same rules": comparison.agreed,
                "Different rules": len(comparison.differences),
                "A version failed": comparison.failed,
            }
        ),
        "confidence": _confidence_chart(
            comparison.active_confidence, comparison.shadow_confidence, active, shadow
        ),
        "latency": _latency_chart(comparison, active, shadow),
    }


def _confidence_chart(first: Histogram, second: Histogram, active: str, shadow: str) -> GroupedBarChart:
    """Each version's share of its own cards per bin, so two versions with unequal counts compare."""
    return grouped_bars(
        [f"{lower:.1f}" for lower, _ in Histogram.edges()],
        [SeriesValues(active, ACTIVE_CLASS, first.shares), SeriesValues(shadow, SHADOW_CLASS, second.shares)],
        lambda share: f"{share * 100:.0f}%",
    )


def _latency_chart(comparison: Comparison, active: str, shadow: str) -> GroupedBarChart:
    def values(latency) -> list[float | None]:
        return [latency.p50, latency.p95, latency.mean] if latency else [None, None, None]

    return grouped_bars(
        ["p50", "p95", "mean"],
        [
            SeriesValues(active, ACTIVE_CLASS, values(comparison.active_latency)),
            SeriesValues(shadow, SHADOW_CLASS, values(comparison.shadow_latency)),
        ],
        _number,
        " ms",
    )


def _number(value: float) -> str:
    """Two significant digits or more, as short as an axis label must be."""
    if value < 1:
        return f"{value:.2f}"
    return f"{value:.1f}" if value < 10 else f"{value:.0f}"


def milliseconds(value: float | None) -> str:
    return "—" if value is None else f"{_number(value)} ms"
