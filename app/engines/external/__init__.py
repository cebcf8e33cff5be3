"""Models the hospital serves itself over KServe v2, declared in a model card's ``endpoint:`` section."""

from app.engines.external.engine import ExternalModelEngine
from app.engines.external.failure import ExternalModelFailed
from app.engines.external.spec import ExternalModel

__all__ = ["ExternalModel", "ExternalModelEngine", "ExternalModelFailed"]
