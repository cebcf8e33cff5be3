"""The governance core behind the CDS Hooks protocol: which model answers, and the durable record."""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import Engine

from app.audit import ledger, outbox
from app.audit.outbox import CARD_SET, DECISION
from app.audit.tables import CardDecision, CardSet
from app.db import retrying, transaction, utcnow
from app.governance.cache import governance_cache
from app.governance.lifecycle import Standing, standing
from app.observability import metrics
from app.serving.card_records import (
    CardSetRecord,
    add_decisions,
    card_set_entry,
    decision_entry,
    recent_override_rules,
)
from app.serving.catalogue import GovernedService, launch_url
from app.serving.replay_guard import DatabaseReplayGuard
from app.serving.runs import ServedAdvice, patient_data, run_version
from app.serving.shadow import ShadowJob, ShadowRunner
from app.settings import Settings
from cds_hooks.auth import VerifiedClient
from cds_hooks.backend import HookCall
from cds_hooks.cards import RenderedCard
from cds_hooks.discovery import ServiceDescriptor
from cds_hooks.models import FeedbackItem


class GovernedBackend:
    """Implements ``cds_hooks.backend.CdsBackend`` on the service catalogue and the database."""

    def __init__(self, catalogue: dict[str, GovernedService], engine: Engine, settings: Settings) -> None:
        self.catalogue = catalogue
        self.engine = engine
        self.settings = settings
        self.base_url = settings.base_url
        self._replay_guard = DatabaseReplayGuard()
        self.governance = governance_cache(engine, settings.governance_refresh_seconds)
        self.shadow = ShadowRunner(settings)
        self._descriptors = [d for s in catalogue.values() for d in s.descriptors()]

    def descriptors(self) -> list[ServiceDescriptor]:
        return self._descriptors

    def advise(self, call: HookCall) -> ServedAdvice:
        """The active version runs if its intended use lets it, and its output passes its guardrails.
        With no active version the call is recorded as suppressed. Shadow versions run later."""
        service = self.catalogue[call.service_id]
        (statuses, lead_version), overridden = self._governance_reads(service, call)
        lead = service.versions[lead_version]
        shadows = tuple(version for version, status in statuses.items() if status == "shadow")
        status = statuses[lead_version]
        if status != "active":
            disposition = status if status in ("paused", "retired") else "no-active-version"
            return ServedAdvice(disposition=disposition, model=lead.model, shadows=shadows)
        advice = run_version(lead, service.id, patient_data(call), overridden)
        return replace(advice, shadows=shadows, overridden=overridden)

    def _governance_reads(self, service: GovernedService, call: HookCall) -> tuple[Standing, frozenset[str]]:
        """Each version's status (and so which one answers) and the rules this clinician recently
        overrode for this patient, from this process's cache: no database round trip while neither
        has changed."""
        patient, user, window = call.context.patient_id, call.context.user_id, service.override_window
        with self.governance.reading() as read:
            statuses = read(("standing", service.id), lambda c: standing(c, service.models))
            overrides = read(
                ("overrides", service.id, patient, user),
                lambda c: recent_override_rules(c, service.id, patient, user, utcnow() - window),
            )
        since = utcnow() - window
        return statuses, frozenset(
            rule for rule, overridden_at in overrides.items() if overridden_at >= since
        )

    def app_launch_url(self) -> str:
        return launch_url(self.base_url)

    def spend_token(self, client: VerifiedClient) -> None:
        with self.engine.begin() as connection:
            self._replay_guard.spend(connection, client)

    def record_response(
        self, call: HookCall, advice: ServedAdvice, cards: list[RenderedCard]
    ) -> list[RenderedCard]:
        """The caller's token, card set, ledger entry and outbox message commit together or not at all.

        Everything is prepared before the transaction opens: SQLite admits one writer at a time, so
        the time between the first write and the commit is time every other worker waits.
        Only issued card sets are written back as Provenance; suppressed calls stay in Countersign's
        own record. Shadow versions then run on the same call, off the request path.
        """
        issued = advice.disposition == "issued"
        writeback_target = self.settings.writeback_target(call.request.fhir_server)
        target = writeback_target if issued else None
        model = advice.model
        record = CardSetRecord.of(call, model, advice, cards)
        kind = "card-set-issued" if issued else "invocation-suppressed"
        entry = card_set_entry(call, model, advice, cards)
        with self.engine.begin() as connection:
            if call.client is not None:
                self._replay_guard.spend(connection, call.client)
            card_set_id = record.insert(connection)
            ledger.append(connection, kind, entry, about=(CardSet, card_set_id))
            if target is not None:
                outbox.enqueue(connection, CARD_SET, card_set_id, target)
        metrics.record_disposition(call.service_id, call.request.hook, advice, len(cards))
        if advice.shadows:
            self.shadow.submit(ShadowJob.of(call, advice.shadows, advice.overridden, writeback_target))
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
