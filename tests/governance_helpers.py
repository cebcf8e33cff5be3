"""Change control as tests use it: a governor, and one call that changes a model version's status."""

from __future__ import annotations

from flask import Flask

from app.db import DATABASE_KEY
from app.governance.change_control import Governor, change_status
from app.governance.lifecycle import ModelChange
from app.governance.model_card import MODEL_CARDS_KEY, ModelRegistry

CMIO = Governor("Practitioner/cmio-1", "cmio", "Dr Ama Osei")
SAFETY_OFFICER = Governor("Practitioner/safety-1", "safety-officer", "Dr Sam Rivera")


def registry(app: Flask) -> ModelRegistry:
    return app.extensions[MODEL_CARDS_KEY]


def change(
    app: Flask,
    action: str,
    *,
    model_id: str = "medication-safety",
    version: str = "1.0.0",
    governor: Governor = CMIO,
    reason: str = "Investigating a cluster of overrides",
    writeback_target: str | None = None,
) -> ModelChange:
    model = registry(app).card(model_id, version)
    assert model is not None, f"no card {model_id} {version}"
    return change_status(
        app.extensions[DATABASE_KEY],
        registry(app),
        model,
        action,
        governor=governor,
        reason=reason,
        writeback_target=writeback_target,
    )
