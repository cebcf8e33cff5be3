"""The one way an external model fails: no score, and a reason that is safe to record anywhere."""

from __future__ import annotations

from app.engines.base import ModelUnavailable


class ExternalModelFailed(ModelUnavailable):
    """Why the model produced no score: a short class of failure ("timeout after 2.0 s", "circuit
    open", "input 'age' missing"), built only from the card's own names and the server's status,
    never from patient data. A ``ModelUnavailable``, so the serving core records it as it records
    any model that cannot answer: no card, reason recorded (``str(failure)`` is the reason)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
