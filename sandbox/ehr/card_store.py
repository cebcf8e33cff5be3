"""Cards the EHR has shown, kept until the clinician acts on them.

Accepting applies what the *service* sent, looked up here by card uuid, never actions posted by
the browser. In memory: the sandbox EHR runs as one process (see docs/DECISIONS.md).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

MAX_CARDS = 2000


@dataclass(frozen=True)
class ShownCard:
    service: str
    hook: str
    patient_id: str
    card: dict

    def suggestion(self, suggestion_uuid: str) -> dict | None:
        return next((s for s in self.card.get("suggestions", ()) if s.get("uuid") == suggestion_uuid), None)

    def override_reason(self, code: str) -> dict | None:
        return next((r for r in self.card.get("overrideReasons", ()) if r.get("code") == code), None)


class CardStore:
    def __init__(self, capacity: int = MAX_CARDS) -> None:
        self._cards: OrderedDict[str, ShownCard] = OrderedDict()
        self._decided: set[str] = set()
        self._capacity = capacity
        self._lock = threading.Lock()

    def remember(self, shown: ShownCard) -> None:
        with self._lock:
            self._cards[shown.card["uuid"]] = shown
            while len(self._cards) > self._capacity:
                evicted, _ = self._cards.popitem(last=False)
                self._decided.discard(evicted)

    def get(self, card_uuid: str) -> ShownCard | None:
        with self._lock:
            return self._cards.get(card_uuid)

    def decide(self, card_uuid: str) -> bool:
        """Mark a card acted upon; False when it already was (one decision per card)."""
        with self._lock:
            if card_uuid in self._decided:
                return False
            self._decided.add(card_uuid)
            return True

    def undecide(self, card_uuid: str) -> None:
        """Undo ``decide`` when applying the decision failed, so the clinician can retry."""
        with self._lock:
            self._decided.discard(card_uuid)
