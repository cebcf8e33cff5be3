"""What the clinician does in the sandbox EHR, and which hook each step fires.

Opening a chart fires ``patient-view``; drafting an order ``order-select``; signing ``order-sign``
with every draft; discharging ``encounter-discharge``. Accepting a card applies its suggestion to
the FHIR server as one transaction, then sends feedback; overriding sends feedback with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from sandbox.ehr.card_store import CardStore, ShownCard
from sandbox.ehr.cds_client import CdsCallError, CdsClient, HookOutcome
from sandbox.ehr.fhir_store import FhirStore, FhirStoreError
from sandbox.ehr.markdown import render_detail
from sandbox.ehr.orders import draft_order, draft_orders_bundle, signed
from sandbox.ehr.suggestions import SuggestionError, actions_transaction

Result = TypeVar("Result")


class WorkflowError(Exception):
    """A step the EHR refuses or could not finish: ``status`` and ``location`` for the OperationOutcome."""

    def __init__(self, status: int, message: str, location: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.location = location


@dataclass
class SandboxEhr:
    store: FhirStore
    cds: CdsClient
    cards: CardStore
    user_id: str

    # Hooks

    def open_chart(self, patient_id: str) -> dict:
        self._patient(patient_id)
        return self._fire("patient-view", patient_id, {})

    def draft(self, patient_id: str, orderable: str) -> dict:
        """Save a draft order, then ask for advice on it with every draft as context."""
        self._patient(patient_id)
        order = self._write(self.store.update, draft_order(patient_id, orderable, self.user_id))
        drafts = self.drafts(patient_id)
        context = {
            "selections": [f"MedicationRequest/{order['id']}"],
            "draftOrders": draft_orders_bundle(drafts),
        }
        return self._fire("order-select", patient_id, context) | {"draft": order}

    def sign(self, patient_id: str) -> dict:
        drafts = self.drafts(patient_id)
        if not drafts:
            raise WorkflowError(409, "there are no draft orders to sign")
        return self._fire("order-sign", patient_id, {"draftOrders": draft_orders_bundle(drafts)})

    def complete_signing(self, patient_id: str) -> list[dict]:
        """The orders as the clinician left them after the cards (accepted changes included) go live."""
        drafts = self.drafts(patient_id)
        if not drafts:
            raise WorkflowError(409, "there are no draft orders to sign")
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": signed(d), "request": {"method": "PUT", "url": f"MedicationRequest/{d['id']}"}}
                for d in drafts
            ],
        }
        self._write(self.store.transaction, bundle)
        return [signed(d) for d in drafts]

    def discharge(self, patient_id: str) -> dict:
        encounter = self._admission(patient_id)
        return self._fire("encounter-discharge", patient_id, {"encounterId": encounter["id"]})

    def complete_discharge(self, patient_id: str, when: str) -> dict:
        encounter = self._admission(patient_id)
        period = {**encounter.get("period", {}), "end": when}
        finished = {**encounter, "status": "finished", "period": period}
        return self._write(self.store.update, finished)

    # Decisions on cards

    def accept(self, card_uuid: str, suggestion_uuid: str) -> dict:
        shown = self._card(card_uuid)
        suggestion = shown.suggestion(suggestion_uuid)
        if suggestion is None:
            raise WorkflowError(400, "the card has no such suggestion", "suggestion")
        try:
            bundle = actions_transaction(suggestion.get("actions") or [], shown.patient_id)
        except SuggestionError as error:
            raise WorkflowError(400, str(error), error.location) from None
        self._check_deletes(bundle, shown.patient_id)
        self._decide(card_uuid)
        try:
            result = self.store.transaction(bundle)
        except FhirStoreError as error:
            self.cards.undecide(card_uuid)
            raise WorkflowError(error.status if error.status < 500 else 502, str(error)) from None
        item = {"card": card_uuid, "outcome": "accepted", "acceptedSuggestions": [{"id": suggestion_uuid}]}
        self._feedback(shown, item)
        locations = [e.get("response", {}).get("location", "") for e in result.get("entry", ())]
        return {"applied": locations}

    def override(self, card_uuid: str, reason_code: str | None, comment: str) -> None:
        shown = self._card(card_uuid)
        offered = shown.card.get("overrideReasons") or []
        override: dict = {}
        if reason_code:
            reason = shown.override_reason(reason_code)
            if reason is None:
                raise WorkflowError(400, "the card does not offer that override reason", "reason")
            override["reason"] = {k: reason[k] for k in ("system", "code", "display") if k in reason}
        elif offered:
            raise WorkflowError(400, "choose one of the override reasons the card offers", "reason")
        if comment.strip():
            override["userComment"] = comment.strip()
        self._decide(card_uuid)
        item: dict = {"card": card_uuid, "outcome": "overridden"}
        if override:
            item["overrideReason"] = override
        self._feedback(shown, item)

    # Reading

    def drafts(self, patient_id: str) -> list[dict]:
        return self.guarded_read(
            lambda: self.store.search("MedicationRequest", patient=patient_id, status="draft")
        )

    def medications(self, patient_id: str) -> list[dict]:
        return self.guarded_read(
            lambda: self.store.search("MedicationRequest", patient=patient_id, status="active")
        )

    # Helpers

    def _fire(self, hook: str, patient_id: str, extra: dict) -> dict:
        context = {"userId": self.user_id, "patientId": patient_id, **extra}
        try:
            outcome: HookOutcome = self.cds.call_hook(hook, context)
        except CdsCallError as error:
            raise WorkflowError(502, f"CDS discovery failed: {error}") from None
        for item in outcome.cards:
            self.cards.remember(ShownCard(item["service"], hook, patient_id, item["card"]))
        cards = [item | {"detailHtml": render_detail(item["card"].get("detail"))} for item in outcome.cards]
        return {"hook": hook, "cards": cards, "unavailable": outcome.failures}

    def _patient(self, patient_id: str) -> dict:
        return self.guarded_read(lambda: self.store.read("Patient", patient_id))

    def _admission(self, patient_id: str) -> dict:
        encounters = self.guarded_read(
            lambda: self.store.search("Encounter", patient=patient_id, status="in-progress")
        )
        if not encounters:
            raise WorkflowError(409, "the patient has no encounter in progress to discharge from")
        return encounters[0]

    def _card(self, card_uuid: str) -> ShownCard:
        shown = self.cards.get(card_uuid)
        if shown is None:
            raise WorkflowError(404, "no card with that uuid was shown here", "card")
        return shown

    def _decide(self, card_uuid: str) -> None:
        if not self.cards.decide(card_uuid):
            raise WorkflowError(409, "this card was already accepted or overridden", "card")

    def _feedback(self, shown: ShownCard, item: dict) -> None:
        try:
            self.cds.feedback(shown.service, item)
        except CdsCallError as error:
            raise WorkflowError(502, f"the decision was recorded here but feedback failed: {error}") from None

    def _check_deletes(self, bundle: dict, patient_id: str) -> None:
        """A delete may only remove a resource of this chart."""
        for entry in bundle["entry"]:
            if entry["request"]["method"] != "DELETE":
                continue
            resource_type, resource_id = entry["request"]["url"].split("/")
            target = self.guarded_read(lambda t=resource_type, i=resource_id: self.store.read(t, i))
            owner = (target.get("subject") or target.get("patient") or {}).get("reference")
            if owner != f"Patient/{patient_id}":
                raise WorkflowError(400, "the delete targets another patient's record", "resourceId")

    @staticmethod
    def guarded_read(call: Callable[[], Result]) -> Result:
        try:
            return call()
        except FhirStoreError as error:
            status = 404 if error.status in (404, 410) else 502
            raise WorkflowError(status, str(error)) from None

    @staticmethod
    def _write(call: Callable[[dict], dict], resource: dict) -> dict:
        try:
            return call(resource)
        except FhirStoreError as error:
            raise WorkflowError(error.status if error.status < 500 else 502, str(error)) from None
