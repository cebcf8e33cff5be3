"""The governance core behind the CDS Hooks protocol: which model answers, and the durable record."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from app.audit.card_records import add_decisions, insert_card_set
from app.db import transaction
from app.engines.base import PatientData
from app.replay_guard import DatabaseReplayGuard
from app.services import GovernedService
from cds_hooks.advice import AdviceSet
from cds_hooks.backend import HookCall
from cds_hooks.cards import RenderedCard
from cds_hooks.discovery import ServiceDescriptor
from cds_hooks.models import FeedbackItem


class GovernedBackend:
    """Implements ``cds_hooks.backend.CdsBackend`` on the service catalogue and the database."""

    def __init__(self, catalogue: dict[str, GovernedService], engine: Engine, base_url: str) -> None:
        self.catalogue = catalogue
        self.engine = engine
        self.base_url = base_url
        self.replay_guard = DatabaseReplayGuard(engine)
        self._descriptors = [d for s in catalogue.values() for d in s.descriptors()]

    def descriptors(self) -> list[ServiceDescriptor]:
        return self._descriptors

    def advise(self, call: HookCall) -> AdviceSet:
        data = PatientData(
            hook=call.request.hook,
            patient_id=call.context.patient_id,
            resources=tuple(call.prefetch.resources()),
            draft_orders=call.context.draft_orders,
            selections=call.context.selections,
        )
        return self.catalogue[call.service_id].engine.suggest(data)

    def app_launch_url(self) -> str:
        return f"{self.base_url}/app/launch"

    def record_response(self, call: HookCall, advice: AdviceSet, cards: list[RenderedCard]) -> None:
        with self.engine.begin() as connection:
            insert_card_set(connection, call, self.catalogue[call.service_id].model, advice, cards)

    def record_feedback(self, service_id: str, items: list[FeedbackItem]) -> int:
        """Idempotent: a concurrent resend that wins the race makes ours a no-op on retry."""
        try:
            with transaction(self.engine) as session:
                return len(add_decisions(session, service_id, items))
        except IntegrityError:
            with transaction(self.engine) as session:
                return len(add_decisions(session, service_id, items))
