"""Turn one outbox message into one FHIR transaction Bundle and write it.

Resources are built here, when the outbox is drained, never on the request path. Every entry is a
conditional create keyed by a delivery tag unique to that resource, so a retried or re-leased
message never creates a duplicate, and a decision's Bundle re-asserts the card set's RequestGroup
so the two messages may land in either order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from pydantic import ValidationError
from sqlalchemy import Engine
from sqlmodel import Session, select

from app.audit.outbox import (
    CARD_SET,
    DECISION,
    MODEL_CHANGE,
    MODEL_PROMOTION,
    SAFETY_EVENT,
    SHADOW_CARD_SET,
    SIGNED_REVIEW,
    USER_AUTHENTICATION,
)
from app.audit.tables import CardDecision, CardSet, IssuedCard
from app.governance.lifecycle import ModelChange
from app.governance.model_card import ModelCard, ModelRegistry
from app.governance.promotion import ModelPromotion
from app.review.tables import ReviewDecision
from app.safety.events import SafetyEvent
from app.security.sign_in_audit import SignInEvent
from app.writeback.fhir_writer import DeliveryError, FhirWriter
from app.writeback.references import KnownReferences
from app.writeback.transaction_bundle import TransactionBundle
from fhir_profiles.ai_output import CardSetFacts, ai_output_provenance, guidance_response, request_group
from fhir_profiles.audit_events import (
    Authentication,
    hook_call_audit_event,
    service_read_audit_event,
    user_authentication_audit_event,
    write_back_audit_event,
)
from fhir_profiles.change_control import (
    ModelChangeFacts,
    PromotionFacts,
    change_control_audit_event,
    change_provenance,
    promotion_audit_event,
    promotion_provenance,
)
from fhir_profiles.decisions import (
    DecisionFacts,
    acceptance_provenance,
    override_provenance,
    override_task,
)
from fhir_profiles.device import (
    CDS_SERVICE,
    GOVERNANCE_SERVICE,
    SMART_APP,
    ai_device,
    model_identifier,
    service_device,
    service_identifier,
)
from fhir_profiles.safety_report import SafetyReport, adverse_event
from fhir_profiles.security_labels import URI_IDENTIFIER_SYSTEM
from fhir_profiles.signed_document import SignedDraft, signed_document, signed_document_provenance

SHADOW = "shadow"  # a card set's disposition when a shadow version made it (app.serving.shadow)


@dataclass(frozen=True)
class Deliverer:
    """Builds the Bundle for a message; raises DeliveryError when it cannot."""

    engine: Engine
    models: ModelRegistry
    base_url: str
    known: dict[str, KnownReferences] = field(default_factory=dict)

    def build(self, kind: str, record_id: int, writer: FhirWriter) -> TransactionBundle:
        """The message's Bundle; a record that cannot become valid FHIR, or a kind of message no
        builder knows, is a permanent failure."""
        builder = BUILDERS.get(kind)
        if builder is None:
            raise DeliveryError(f"no FHIR delivery for outbox messages of kind {kind!r}", permanent=True)
        with Session(self.engine) as session:
            try:
                bundle = builder(self, session, record_id, writer)
            except (ValidationError, KeyError, TypeError, ValueError) as error:
                reason = f"the record cannot be expressed as valid FHIR ({type(error).__name__})"
                raise DeliveryError(reason, permanent=True) from None
        return bundle

    def resolve_references(self, writer: FhirWriter, bundles: list[TransactionBundle]) -> None:
        """Make references the server cannot resolve logical, asking it once for a whole batch."""
        known = self.known.setdefault(writer.server.key, KnownReferences(writer))
        known.localize([entry["resource"] for bundle in bundles for entry in bundle.entries])

    def _model(self, model_id: str, version: str) -> ModelCard:
        """The version's card; a record of a version whose card was since removed names the model's."""
        return self.models.card(model_id, version) or self.models.initial(model_id)

    def _device(self, bundle: TransactionBundle, model_id: str, version: str) -> str:
        """The model version's AI-Device, created once on the server and referenced from the Bundle."""
        model = self._model(model_id, version)
        key = f"{model.id}-{version}"
        device = ai_device(key, model.name, version, model.page_url(self.base_url))
        identifier = model_identifier(key)
        return bundle.add(device, f"device.{key}", f"identifier={identifier['system']}|{key}")

    def _model_change_bundle(self, session: Session, change_id: int, writer: FhirWriter) -> TransactionBundle:
        bundle = TransactionBundle()
        change = session.get(ModelChange, change_id)
        model = self._model(change.model_id, change.model_version)
        facts = ModelChangeFacts(
            model_label=f"{model.name} {change.model_version}",
            device_ref=self._device(bundle, change.model_id, change.model_version),
            service_ref=add_service_device(bundle, GOVERNANCE_SERVICE),
            previous_status=change.previous_status,
            status=change.status,
            approver=change.approver,
            role=change.role,
            reason=change.reason,
            changed_at=change.changed_at,
            approver_name=change.approver_name,
        )
        key = f"model-change.{change_id}.{change.changed_at.isoformat()}"
        bundle.add(change_control_audit_event(facts), f"{key}.audit-event")
        bundle.add(change_provenance(facts), f"{key}.provenance")
        return bundle

    def _model_promotion_bundle(self, session: Session, act_id: int, writer: FhirWriter) -> TransactionBundle:
        """One act of a promotion (propose, approve, withdraw, rollback): its E9 AuditEvent naming
        both versions' Devices, and the Provenance of the act on that AuditEvent and the Devices.
        The status changes an approval or a rollback makes are messages of their own."""
        bundle = TransactionBundle()
        act = session.get(ModelPromotion, act_id)
        model = self._model(act.model_id, act.model_version)
        replaced = act.from_version
        facts = PromotionFacts(
            act=act.act,
            model_name=model.name,
            model_id=act.model_id,
            model_version=act.model_version,
            device_ref=self._device(bundle, act.model_id, act.model_version),
            service_ref=add_service_device(bundle, GOVERNANCE_SERVICE),
            governor=act.by,
            role=act.role,
            reason=act.reason,
            at=act.at,
            from_version=replaced,
            from_device_ref=self._device(bundle, act.model_id, replaced) if replaced else None,
            proposal=act.id if act.act == "propose" else act.proposal,
            governor_name=act.by_name,
        )
        key = f"model-promotion.{act_id}.{act.at:%Y%m%dT%H%M%S%f}"
        audit = bundle.add(promotion_audit_event(facts), f"{key}.audit-event")
        bundle.add(promotion_provenance(facts, audit), f"{key}.provenance")
        return bundle

    def _safety_event_bundle(self, session: Session, event_id: int, writer: FhirWriter) -> TransactionBundle:
        bundle = TransactionBundle()
        event = session.get(SafetyEvent, event_id)
        report = SafetyReport(
            patient_id=event.patient_id,
            device_ref=self._device(bundle, event.model_id, event.model_version),
            description=event.description,
            category=event.category,
            severity=event.severity,
            occurred_at=event.occurred_at,
            detected_at=event.detected_at,
            recorded_at=event.detected_at,
            recorder_ref=event.reporter,
            encounter_id=event.encounter_id,
        )
        bundle.add(adverse_event(report), f"safety-event.{event_id}.{event.card_uuid}")
        return bundle

    def _user_authentication_bundle(
        self, session: Session, event_id: int, writer: FhirWriter
    ) -> TransactionBundle:
        """A sign-in or session end: its AuditEvent and the SMART app's Device it names; no patient."""
        server = writer.server.key
        bundle = TransactionBundle()
        event = session.get(SignInEvent, event_id)
        authentication = Authentication(
            action=event.action,
            occurred_at=event.occurred_at,
            app_ref=add_service_device(bundle, SMART_APP),
            refused=event.refused,
            reason=event.reason,
            user_ref=_user_reference(event.ehr, event.fhir_user, server),
            role=event.role,
            ehr=event.ehr,
            session=event.session,
        )
        key = f"user-authentication.{event_id}.{event.occurred_at:%Y%m%dT%H%M%S%f}"
        bundle.add(user_authentication_audit_event(authentication), key)
        return bundle

    def _signed_review_bundle(
        self, session: Session, review_id: int, writer: FhirWriter
    ) -> TransactionBundle:
        """The signed document, its AI-Provenance and the AuditEvent of our write (E5)."""
        bundle = TransactionBundle()
        review = session.get(ReviewDecision, review_id)
        card = session.get(IssuedCard, review.card_uuid)
        facts = self._facts(session, session.get(CardSet, card.card_set_id), bundle)
        [held] = [s for s in card.held_for_review if s["uuid"] == review.suggestion_uuid]
        [action] = [a for a in held["actions"] if a["type"] == "create"]
        draft = SignedDraft(
            held_document=action["resource"],
            text=review.text,
            signer=review.reviewer,
            signed_at=review.decided_at,
            device_ref=facts.device_ref,
            suggestion_uuid=review.suggestion_uuid,
            request_group_ref=bundle.add(request_group(facts), f"{facts.key}.request-group"),
            evidence_refs=tuple(card.evidence_refs),
        )
        key = f"review.{review.card_uuid}"
        document = bundle.add(signed_document(draft), f"{key}.document")
        written = bundle.add(signed_document_provenance(draft, document), f"{key}.provenance")
        audit = write_back_audit_event(
            facts.patient_id, written, review.reviewer, review.decided_at, facts.service_ref
        )
        bundle.add(audit, f"{key}.audit-event")
        return bundle

    def _facts(self, session: Session, card_set: CardSet, bundle: TransactionBundle) -> CardSetFacts:
        device_ref = self._device(bundle, card_set.model_id, card_set.model_version)
        cards = session.exec(select(IssuedCard).where(IssuedCard.card_set_id == card_set.id)).all()
        return CardSetFacts(
            key=card_set.uuid,
            hook_instance=card_set.hook_instance,
            hook=card_set.hook,
            service_url=f"{self.base_url}/cds-services/{card_set.service_id}",
            patient_id=card_set.patient_id,
            encounter_id=card_set.encounter_id,
            user_id=card_set.user_id,
            device_ref=device_ref,
            service_ref=add_service_device(bundle, CDS_SERVICE),
            model_version=f"{card_set.model_id}-{card_set.model_version}",
            issued_at=card_set.created_at,
            input_refs=tuple(card_set.input_refs),
            cards=tuple(sorted((_with_held(c) for c in cards), key=lambda card: card["uuid"])),
            fetched_prefetch_keys=tuple(card_set.fetched_prefetch_keys),
        )

    def _card_set_bundle(self, session: Session, card_set_id: int, writer: FhirWriter) -> TransactionBundle:
        bundle = TransactionBundle()
        card_set = session.get(CardSet, card_set_id)
        if card_set.disposition == SHADOW:
            raise ValueError("a shadow card set was never shown: it is written as a shadow run only")
        facts = self._facts(session, card_set, bundle)
        group = bundle.add(request_group(facts), f"{facts.key}.request-group") if facts.cards else ""
        guidance = bundle.add(guidance_response(facts, group), f"{facts.key}.guidance-response")
        bundle.add(ai_output_provenance(facts, group, guidance), f"{facts.key}.provenance")
        bundle.add(hook_call_audit_event(facts, guidance), f"{facts.key}.audit-event")
        for key in facts.fetched_prefetch_keys:
            bundle.add(service_read_audit_event(facts, key), f"{facts.key}.read.{key}")
        return bundle

    def _shadow_card_set_bundle(
        self, session: Session, card_set_id: int, writer: FhirWriter
    ) -> TransactionBundle:
        """A shadow version's run on a hook call: its AuditEvent (subtype ``shadow``) with the
        version's Device and the service's, and nothing of its cards: they were never shown, so
        no GuidanceResponse, RequestGroup or AI-Provenance says they were."""
        bundle = TransactionBundle()
        card_set = session.get(CardSet, card_set_id)
        if card_set.disposition != SHADOW:
            raise ValueError(f"card set {card_set_id} is {card_set.disposition}, not a shadow run")
        facts = self._facts(session, card_set, bundle)
        bundle.add(hook_call_audit_event(facts, None, shadow=True), f"{facts.key}.shadow-audit-event")
        return bundle

    def _decision_bundle(self, session: Session, decision_id: int, writer: FhirWriter) -> TransactionBundle:
        bundle = TransactionBundle()
        decision = session.get(CardDecision, decision_id)
        card = session.get(IssuedCard, decision.card_uuid)
        card_set = session.get(CardSet, card.card_set_id)
        facts = self._facts(session, card_set, bundle)
        group = bundle.add(request_group(facts), f"{facts.key}.request-group")
        decided = DecisionFacts(
            card_uuid=card.uuid,
            outcome=decision.outcome,
            decided_at=decision.decided_at(card_set.created_at),
            accepted_suggestions=tuple(decision.accepted_suggestions),
            reason=_reason(decision),
            comment=decision.user_comment,
        )
        key = decision_key(decision)
        if decision.outcome == "accepted":
            self._add_acceptance(bundle, facts, decided, card.card, group, key, writer)
        else:
            task = bundle.add(override_task(facts, decided, group), f"{key}.task")
            written = bundle.add(override_provenance(facts, decided, task, group), f"{key}.provenance")
            audit = write_back_audit_event(
                facts.patient_id, written, facts.user_id, decided.decided_at, facts.service_ref
            )
            bundle.add(audit, f"{key}.audit-event")
        return bundle

    def _add_acceptance(
        self,
        bundle: TransactionBundle,
        facts: CardSetFacts,
        decided: DecisionFacts,
        card: dict,
        group: str,
        key: str,
        writer: FhirWriter,
    ) -> None:
        accepted = [s for s in card.get("suggestions", []) if s["uuid"] in decided.accepted_suggestions]
        for suggestion in accepted:
            for index, action in enumerate(suggestion.get("actions", [])):
                target = _accepted_target(action, suggestion["uuid"], writer)
                provenance = acceptance_provenance(facts, decided, target, action["type"], group)
                step = f"{key}.{suggestion['uuid'][:8]}.{index}"
                written = bundle.add(provenance, f"{step}.provenance")
                audit = write_back_audit_event(
                    facts.patient_id, written, facts.user_id, decided.decided_at, facts.service_ref
                )
                bundle.add(audit, f"{step}.audit-event")


Builder = Callable[[Deliverer, Session, int, FhirWriter], TransactionBundle]
#: The builder of each kind of outbox message (``app.audit.outbox``): any other kind is refused.
BUILDERS: dict[str, Builder] = {
    CARD_SET: Deliverer._card_set_bundle,
    SHADOW_CARD_SET: Deliverer._shadow_card_set_bundle,
    DECISION: Deliverer._decision_bundle,
    SAFETY_EVENT: Deliverer._safety_event_bundle,
    SIGNED_REVIEW: Deliverer._signed_review_bundle,
    USER_AUTHENTICATION: Deliverer._user_authentication_bundle,
    MODEL_CHANGE: Deliverer._model_change_bundle,
    MODEL_PROMOTION: Deliverer._model_promotion_bundle,
}


def add_service_device(bundle: TransactionBundle, service_key: str) -> str:
    """Countersign's own Device, created once on the server before anything there names it."""
    identifier = service_identifier(service_key)
    condition = f"identifier={identifier['system']}|{service_key}"
    return bundle.add(service_device(service_key), f"service.{service_key}", condition)


def decision_key(decision: CardDecision) -> str:
    """Where the delivery tag of every resource a decision writes starts (a card set's: its uuid)."""
    return f"decision.{decision.fingerprint[:32]}"


def _user_reference(ehr: str | None, user: str | None, server: str) -> str | None:
    """The EHR's user as ``server`` can follow it: relative when the EHR is that server, else the
    absolute URL, which ``resolve_references`` turns into a logical reference."""
    if user is None or ehr is None:
        return None
    return user if ehr == server else f"{ehr}/{user}"


def _accepted_target(action: dict, suggestion_uuid: str, writer: FhirWriter) -> str:
    """The version the EHR wrote when it applied the suggestion, found by our identifier on it."""
    if action["type"] == "delete":
        return action["resourceId"]
    resource_type = action["resource"]["resourceType"]
    found = writer.search(
        resource_type, {"identifier": f"{URI_IDENTIFIER_SYSTEM}|urn:uuid:{suggestion_uuid}"}
    )
    entries = [e["resource"] for e in found.get("entry", []) if e.get("resource", {}).get("id")]
    if not entries:
        raise DeliveryError(f"the accepted {resource_type} is not on the server yet", permanent=False)
    resource = entries[0]
    version = resource.get("meta", {}).get("versionId")
    reference = f"{resource_type}/{resource['id']}"
    return f"{reference}/_history/{version}" if version else reference


def _with_held(card: IssuedCard) -> dict:
    """The card as the RequestGroup records it: a proposal held for review is still the AI's
    proposal (and an action needs a resource or sub-actions, rqg-1), so it is listed with the rest."""
    if not card.held_for_review:
        return card.card
    suggestions = [*card.card.get("suggestions", []), *card.held_for_review]
    return card.card | {
        "suggestions": suggestions,
        "selectionBehavior": card.card.get("selectionBehavior", "at-most-one"),
    }


def _reason(decision: CardDecision) -> dict | None:
    if decision.override_code is None:
        return None
    coding = {"system": decision.override_system, "code": decision.override_code}
    if decision.override_display:
        coding["display"] = decision.override_display
    return coding
