"""Running one model version on one call under its own policy: intended use, the engine with its
latency measured, then the guardrails. The active version and each shadow run the same way."""

from __future__ import annotations

import time
from dataclasses import dataclass

from app.engines.base import ModelUnavailable, PatientData
from app.governance.guardrails import GovernedAdvice, apply_guardrails
from app.governance.model_card import ModelCard
from app.governance.policy import outside_intended_use
from app.observability import metrics
from app.serving.catalogue import ServedVersion
from cds_hooks.backend import HookCall


@dataclass(frozen=True)
class ServedAdvice(GovernedAdvice):
    """Governed advice and what produced it: the version, how long its engine took, why it failed."""

    model: ModelCard | None = None
    latency_ms: float | None = None
    failure: str | None = None
    shadows: tuple[str, ...] = ()
    """Versions in shadow, to run on the same call once its record has committed."""
    overridden: frozenset[str] = frozenset()


def patient_data(call: HookCall) -> PatientData:
    return PatientData(
        hook=call.request.hook,
        patient_id=call.context.patient_id,
        encounter_id=call.context.encounter_id,
        resources=tuple(call.prefetch.resources()),
        draft_orders=call.context.draft_orders,
        selections=call.context.selections,
    )


def run_version(
    served: ServedVersion, service_id: str, data: PatientData, overridden: frozenset[str]
) -> ServedAdvice:
    """The version's advice for ``data``; a model that cannot answer gives no card and its reason."""
    model = served.model
    outside = outside_intended_use(model.policy, data.hook, data)
    if outside is not None:
        event = {"guardrail": "applicability", "detail": outside}
        return ServedAdvice(disposition="not-applicable", guardrail_events=(event,), model=model)
    started = time.perf_counter()
    try:
        suggested = served.engine.suggest(data)
    except ModelUnavailable as failure:
        event = {"guardrail": "model-unavailable", "detail": str(failure)}
        return ServedAdvice(
            disposition="model-unavailable",
            guardrail_events=(event,),
            model=model,
            latency_ms=_elapsed_ms(started),
            failure=str(failure),
        )
    latency_ms = _elapsed_ms(started)
    metrics.ENGINE_LATENCY.labels(service_id).observe(latency_ms / 1000)
    governed = apply_guardrails(model.policy, suggested, data, overridden)
    return ServedAdvice(**vars(governed), model=model, latency_ms=latency_ms)


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)
