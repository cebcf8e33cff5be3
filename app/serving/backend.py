"""The governance core behind the CDS Hooks protocol: which model answers, and the durable record."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

from sqlalchemy import Engine

from app.audit import ledger, outbox
from app.audit.outbox import CARD_SET, DECISION
from app.audit.tables import CardDecision, CardSet
from app.db import retrying, transaction, utcnow
from app.engines.base import PatientData
from app.governance.cache import governance_cache
from app.governance.guardrails import GovernedAdvice, apply_guardrails
from app.governance.lifecycle import current_status
from app.governance.policy import outside_intended_use
from app.observability import metrics
from app.serving.card_records import (
    CardSetRecord,
    add_decisions,
    card_set_entry,
    decision_entry,
    recent_override_rules,
)
from app.serving.catalogue import GovernedService
from app.serving.replay_guard import DatabaseReplayGuard
from app.settings import Settings
from cds_hooks.advice import AdviceSet
from cds_hooks.auth import VerifiedClient
from cds_hooks.backend import HookCall
from cds_hooks.cards import RenderedCard
from cds_hooks.discovery import ServiceDescriptor
from cds_hooks.models import FeedbackItem

LEDGER_KIND = {"issued": "card-set-issued", "shadow": "card-set-shadow"}


class GovernedBackend:
    """Implements ``cds_hooks.backend.CdsBackend`` on the service catalogue and the database."""

    def __init__(self, catalogue: dict[str, GovernedService], engine: Engine, settings: Settings) -> None:
        self.catalogue = catalogue
        self.engine = engine
        self.settings = settings
        self.base_url = settings.base_url
        self._replay_guard = DatabaseReplayGuard()
        self.governance = governance_cache(engine, settings.governance_refresh_seconds)
        self._descriptors = [d for s in catalogue.values() for d in s.descriptors()]

    def descriptors(self) -> list[ServiceDescriptor]:
        return self._descriptors

    def advise(self, call: HookCall) -> AdviceSet:
        """The model runs only if its status and intended use let it; its output then passes the
        guardrails. Shadow output is kept but never shown."""
        service = self.catalogue[call.service_id]
        policy = service.model.policy
        data = PatientData(
            hook=call.request.hook,
            patient_id=call.context.patient_id,
            encounter_id=call.context.encounter_id,
            resources=tuple(call.prefetch.resources()),
            draft_orders=call.context.draft_orders,
            selections=call.context.selections,
        )
        status, overridden = self._governance_reads(service, call)
        if status in ("paused", "retired"):
            return GovernedAdvice(disposition=status)
        outside = outside_intended_use(policy, call.request.hook, data)
        if outside is not None:
            event = {"guardrail": "applicability", "detail": outside}
            return GovernedAdvice(disposition="not-applicable", guardrail_events=(event,))
        with metrics.ENGINE_LATENCY.labels(service.id).time():
            suggested = service.engine.suggest(data)
        governed = apply_guardrails(policy, suggested, data, overridden)
        return replace(governed, disposition="shadow") if status == "shadow" else governed

    def _governance_reads(self, service: GovernedService, call: HookCall) -> tuple[str, set[str]]:
        """The model's status and the rules this clinician recently overrode for this patient, from
        this process's cache: no database round trip while neither has changed."""
        model, patient, user = service.model, call.context.patient_id, call.context.user_id
        window = timedelta(hours=model.policy.override_suppression_hours)
        with self.governance.reading() as read:
            status = read(("status", model.id, model.version), lambda c: current_status(c, model))
            overrides = read(
                ("overrides", service.id, patient, user),
                lambda c: recent_override_rules(c, service.id, patient, user, utcnow() - window),
            )
        since = utcnow() - window
        return status, {rule for rule, overridden_at in overrides.items() if overridden_at >= since}

    def app_launch_url(self) -> str:
        return f"{self.base_url}/app/launch"

    def spend_token(self, client: VerifiedClient) -> None:
        with self.engine.begin() as connection:
            self._replay_guard.spend(connection, client)

    def record_response(
        self, call: HookCall, advice: AdviceSet, cards: list[RenderedCard]
    ) -> list[RenderedCard]:
        """The caller's token, card set, ledger entry and outbox message commit together or not at all.

        Everything is prepared before the transaction opens: SQLite admits one writer at a time, so
        the time between the first write and the commit is time every other worker waits.
        Only issued card sets are written back to the EHR: shadow output and suppressed calls stay
        in Countersign's own record.
        """
        issued = advice.disposition == "issued"
        target = self.settings.writeback_target(call.request.fhir_server) if issued else None
        model = self.catalogue[call.service_id].model
        record = CardSetRecord.of(call, model, advice, cards)
        kind = LEDGER_KIND.get(advice.disposition, "invocation-suppressed")
        entry = card_set_entry(call, model, advice, cards)
        with self.engine.begin() as connection:
            if call.client is not None:
                self._replay_guard.spend(connection, call.client)
            card_set_id = record.insert(connection)
            ledger.append(connection, kind, entry, about=(CardSet, card_set_id))
            if target is not None:
                outbox.enqueue(connection, CARD_SET, card_set_id, target)
        metrics.record_disposition(call.service_id, call.request.hook, advice, len(cards))
        return cards if issued else []

    def record_feedback(self, service_id: str, items: list[FeedbackItem]) -> int:
        """Idempotent: a concurrent resend that wins the race makes ours a no-op on retry."""
        return retrying(lambda: self._store_decisions(service_id, items))

    def _store_decisions(self, service_id: str, items: list[FeedbackItem]) -> int:
        with transaction(self.engine) as session:
            decisions = add_decisions(session, service_id, items)
            session.flush()
            connection = session.connection()
            for decision, card_set in decisions:
                entry = decision_entry(decision)
                ledger.append(connection, "decision-recorded", entry, about=(CardDecision, decision.id))
                target = self.settings.writeback_target(card_set.fhir_server)
                if target is not None:
                    outbox.enqueue(connection, DECISION, decision.id, target)
            return len(decisions)
