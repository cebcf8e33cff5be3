"""What the check's EHR does, step by step, and which outbox messages each step left behind.

The sandbox EHR's workflow drives the hooks as a hospital EHR would: its own signing key, prefetch
filled from the FHIR server under test, an accepted suggestion applied to that server as a
transaction before the feedback is sent. The held discharge draft is signed through the review
checkpoint, as a clinician's signature on the review page would be.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlmodel import Session

from app.audit.outbox import OutboxMessage
from app.review.checkpoint import ReviewRefused, held_draft, sign
from app.writeback.backend_services import TokenError
from sandbox.ehr.workflow import SandboxEhr, WorkflowError
from sandbox.integration_check.report import Row
from sandbox.integration_check.service import RunningCountersign

GAP, RENAL, DISCHARGE = "cs-hba1c-gap", "cs-renal-metformin", "cs-discharge-high-lace"
#: The synthetic patients the journey needs (unsuffixed ids).
STORIES = frozenset({GAP, RENAL, DISCHARGE})
MEDICATION_SAFETY = "medication-safety"
DISCHARGE_DRAFT = "discharge-summary-draft"
OVERRIDE_COMMENT = "Integration check: overridden with a reason"
SIGNATURE_NOTE = "\n\nReviewed and signed by the integration check."


@dataclass
class Step:
    """One thing the EHR did, for one patient; ``applied``: what the EHR wrote to the server."""

    name: str
    patient_id: str
    rows: list[Row] = field(default_factory=list)
    messages: list[int] = field(default_factory=list)
    applied: list[str] = field(default_factory=list)


@dataclass
class Journey:
    ehr: SandboxEhr
    countersign: RunningCountersign
    #: unsuffixed story id → the id loaded for this run
    patients: dict[str, str]
    shown: dict[str, list[dict]] = field(default_factory=dict)
    accepted_card: str | None = None

    def run(self) -> list[Step]:
        plan: list[tuple[str, str, Callable[[Step], None]]] = [
            ("patient-view", GAP, self._patient_view),
            ("order-select", RENAL, self._order_select),
            ("order-sign", RENAL, self._order_sign),
            ("accept", RENAL, self._accept),
            ("override", RENAL, self._override),
            ("encounter-discharge", DISCHARGE, self._discharge),
            ("sign draft", DISCHARGE, self._sign_draft),
        ]
        return [self._step(name, self.patients[story], action) for name, story, action in plan]

    def _step(self, name: str, patient_id: str, action: Callable[[Step], None]) -> Step:
        """Run ``action``; a refusal becomes a failed row, and the step's messages are recorded."""
        step = Step(name, patient_id)
        before = self._last_message()
        try:
            action(step)
        except (WorkflowError, ReviewRefused, TokenError) as error:
            step.rows.append(Row.failed(name, "the EHR's action", f"refused: {error}"))
        with self.countersign.engine.connect() as connection:
            query = select(OutboxMessage.id).where(OutboxMessage.id > before).order_by(OutboxMessage.id)
            step.messages = list(connection.execute(query).scalars())
        return step

    def _patient_view(self, step: Step) -> None:
        self._cards(step, "patient-view", self.ehr.open_chart(step.patient_id), ["problem-list-gaps"])

    def _order_select(self, step: Step) -> None:
        cards: list[dict] = []
        unavailable: list[str] = []
        for orderable in ("gabapentin-300-tid", "ibuprofen-400-tid"):
            shown = self.ehr.draft(step.patient_id, orderable)
            cards += shown["cards"]
            unavailable += shown["unavailable"]
        self._cards(step, "order-select", {"cards": cards, "unavailable": unavailable}, [MEDICATION_SAFETY])

    def _order_sign(self, step: Step) -> None:
        shown = self.ehr.sign(step.patient_id)
        self.shown["order-sign"] = shown["cards"]
        self._cards(step, "order-sign", shown, [MEDICATION_SAFETY], minimum=2)

    def _accept(self, step: Step) -> None:
        choice = next(
            (
                (item["card"]["uuid"], suggestion["uuid"])
                for item in self.shown.get("order-sign", [])
                for suggestion in item["card"].get("suggestions", [])
                if any(action.get("type") == "update" for action in suggestion.get("actions", []))
            ),
            None,
        )
        check = "suggestion applied by the EHR, feedback sent"
        if choice is None:
            step.rows.append(Row.failed(step.name, check, "order-sign returned no card with an update"))
            return
        applied = self.ehr.accept(*choice)["applied"]
        self.accepted_card = choice[0]
        step.applied = [location.split("/_history/")[0] for location in applied if location]
        step.rows.append(
            Row.judge(step.name, check, 1, len(step.applied), "the EHR's transaction wrote nothing")
        )

    def _override(self, step: Step) -> None:
        card = next(
            (i["card"] for i in self.shown.get("order-sign", []) if i["card"]["uuid"] != self.accepted_card),
            None,
        )
        check = "override with a reason sent"
        if card is None:
            step.rows.append(Row.failed(step.name, check, "order-sign returned no second card to override"))
            return
        reasons = card.get("overrideReasons") or []
        self.ehr.override(card["uuid"], reasons[0]["code"] if reasons else None, OVERRIDE_COMMENT)
        step.rows.append(Row.judge(step.name, check, 1, 1, ""))

    def _discharge(self, step: Step) -> None:
        shown = self.ehr.discharge(step.patient_id)
        self.shown["encounter-discharge"] = shown["cards"]
        self._cards(step, "encounter-discharge", shown, ["readmission-risk", DISCHARGE_DRAFT])

    def _sign_draft(self, step: Step) -> None:
        check = "held draft signed at the review checkpoint"
        card = next(
            (i["card"] for i in self.shown.get("encounter-discharge", []) if i["service"] == DISCHARGE_DRAFT),
            None,
        )
        if card is None:
            step.rows.append(Row.failed(step.name, check, "encounter-discharge returned no discharge draft"))
            return
        engine, settings = self.countersign.engine, self.countersign.settings
        with Session(engine) as session:
            draft = held_draft(session, card["uuid"])
        if draft is None:
            step.rows.append(Row.failed(step.name, check, "the discharge draft card holds nothing to review"))
            return
        sign(
            engine,
            card["uuid"],
            draft.text + SIGNATURE_NOTE,
            reviewer=self.ehr.user_id,
            writeback_target=settings.writeback_target,
        )
        step.rows.append(Row.judge(step.name, check, 1, 1, ""))

    def _cards(self, step: Step, hook: str, shown: dict, services: list[str], minimum: int = 1) -> None:
        """A row per service: it answered the hook with at least ``minimum`` cards."""
        for service in services:
            count = sum(item["service"] == service for item in shown["cards"])
            hint = (
                f"{service} failed on {hook}: Countersign could not read what it needs from the FHIR "
                "server (a refused prefetch query answers 412)"
                if shown["unavailable"]
                else f"{service} returned fewer cards than the synthetic patient calls for"
            )
            step.rows.append(
                Row.judge(step.name, f"cards from {service}", minimum, count, hint, at_least=True)
            )

    def _last_message(self) -> int:
        with self.countersign.engine.connect() as connection:
            return connection.execute(select(func.max(OutboxMessage.id))).scalar() or 0
