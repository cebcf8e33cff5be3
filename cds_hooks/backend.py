"""What the protocol layer needs from the product, as an interface the app implements.

``cds_hooks`` knows how to speak CDS Hooks; which model answers, under which policy, and how the
answer is recorded belong to the governance core behind this interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from cds_hooks.advice import AdviceSet
from cds_hooks.auth import VerifiedClient
from cds_hooks.cards import RenderedCard
from cds_hooks.discovery import ServiceDescriptor
from cds_hooks.models import FeedbackItem, HookContext, HookRequest
from cds_hooks.prefetch import ResolvedPrefetch


@dataclass(frozen=True)
class HookCall:
    """One validated service call with its prefetch resolved: everything a model may look at."""

    service_id: str
    request: HookRequest
    context: HookContext
    prefetch: ResolvedPrefetch
    client: VerifiedClient | None


class UnknownCards(Exception):
    """Feedback named cards this service never issued; nothing of the batch was stored."""

    def __init__(self, card_uuids: list[str]) -> None:
        super().__init__(", ".join(card_uuids))
        self.card_uuids = card_uuids


class UnknownSuggestions(Exception):
    """Accepted suggestions that do not belong to the card they were reported on."""


class ReplayedToken(Exception):
    """The caller's JWT ``jti`` was spent before: the call is refused and nothing is recorded."""


class CdsBackend(Protocol):
    def spend_token(self, client: VerifiedClient) -> None:
        """Record the token's ``jti`` as used, on its own; raises ReplayedToken if it was."""

    def descriptors(self) -> Sequence[ServiceDescriptor]:
        """Every (service id, hook) this deployment offers, in discovery order."""

    def advise(self, call: HookCall) -> AdviceSet:
        """Run the service's model under governance; an exception here is a 5xx, never empty cards."""

    def app_launch_url(self) -> str:
        """The SMART launch URL that cards link to."""

    def record_response(
        self, call: HookCall, advice: AdviceSet, cards: list[RenderedCard]
    ) -> list[RenderedCard]:
        """Durably record the card set, spending ``call.client``'s token in the same transaction,
        before the response leaves; returns the cards to show. Raises ReplayedToken."""

    def record_feedback(self, service_id: str, items: list[FeedbackItem]) -> int:
        """Store decisions idempotently; returns how many were new. Raises UnknownCards."""
