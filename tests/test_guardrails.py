"""The guardrail pipeline, end to end through the hook endpoint: each guardrail removed fails a test."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import text

from app import DATABASE_KEY
from cds_hooks.advice import Advice, AdviceSet, CardSource, Evidence, ProposedAction, ProposedSuggestion
from tests.builders import full_prefetch, medication_request, moment, order_sign_request, patient
from tests.writeback_helpers import FEEDBACK, NON_ADHERENCE, SERVICE

SOURCE = CardSource(
    "Countersign Medication Safety 1.0.0", "http://localhost/app/models/medication-safety", "ms", "AI"
)


class ScriptedEngine:
    """Answers with the advice a test gives it, so each guardrail can be fed what it must stop."""

    def __init__(self, advice: list[Advice]) -> None:
        self.advice = advice

    def suggest(self, data) -> AdviceSet:
        return AdviceSet(tuple(self.advice), ("MedicationRequest/d1",))


def advice(
    rule: str, confidence: float = 0.9, evidence: str = "MedicationRequest/d1", resource: dict | None = None
) -> Advice:
    suggestion = ()
    if resource is not None:
        suggestion = (
            ProposedSuggestion("Apply", (ProposedAction("update", "Update the order", resource),), True),
        )
    return Advice(
        summary=f"Card from rule {rule}",
        indicator="warning",
        rationale="Because.",
        confidence=confidence,
        source=SOURCE,
        evidence=(Evidence(evidence, "the draft"),),
        suggestions=suggestion,
        rule_id=rule,
    )


@pytest.fixture
def scripted(app, monkeypatch):
    """Replace the engine (and, if asked, the policy's risk tier) of the medication-safety service."""
    catalogue = app.extensions["cds_hooks"].backend.catalogue

    def use(items: list[Advice], risk_tier: str | None = None) -> None:
        service = catalogue["medication-safety"].with_version("1.0.0", ScriptedEngine(items))
        if risk_tier is not None:
            model = service.versions["1.0.0"].model
            policy = model.policy.model_copy(update={"risk_tier": risk_tier})
            service = service.with_version("1.0.0", model=model.model_copy(update={"policy": policy}))
        monkeypatch.setitem(catalogue, "medication-safety", service)

    return use


def sign(client, auth, prefetch: dict | None = None, user: str | None = None) -> list[dict]:
    body = order_sign_request([medication_request("d1")], prefetch)
    if user:
        body["context"]["userId"] = user
    response = client.post(SERVICE, json=body, headers=auth(SERVICE))
    assert response.status_code == 200
    return response.get_json()["cards"]


def guardrail_events(app) -> list[str]:
    with app.extensions[DATABASE_KEY].connect() as connection:
        rows = connection.execute(text("SELECT content FROM ledger_entry ORDER BY seq")).scalars()
        return [event["guardrail"] for row in rows for event in json.loads(row).get("guardrails", [])]


def test_a_child_is_outside_the_intended_use_and_gets_no_card(app, client, auth):
    child = patient() | {"birthDate": "2016-05-01"}
    assert sign(client, auth, full_prefetch() | {"patient": child}) == []
    assert guardrail_events(app) == ["applicability"]


def test_evidence_not_in_the_input_is_dropped(app, client, auth, scripted):
    scripted([advice("grounded"), advice("invented", evidence="Observation/never-sent")])
    assert [c["extension"]["health.countersign.ai"]["rule"] for c in sign(client, auth)] == ["grounded"]
    assert guardrail_events(app) == ["grounding"]


def test_a_proposal_that_is_not_valid_fhir_is_dropped(app, client, auth, scripted):
    broken = {"resourceType": "MedicationRequest", "id": "d1", "status": "not-a-status", "intent": "order"}
    scripted([advice("broken", resource=broken | {"subject": "not-a-reference"})])
    assert sign(client, auth) == []
    assert guardrail_events(app) == ["invalid-proposal"]


def test_confidence_below_the_floor_is_dropped_and_between_floor_and_threshold_is_an_info_prompt(
    app, client, auth, scripted
):
    scripted([advice("sure", 0.9), advice("unsure", 0.6), advice("guess", 0.3)])
    cards = {c["extension"]["health.countersign.ai"]["rule"]: c for c in sign(client, auth)}
    assert set(cards) == {"sure", "unsure"}
    assert cards["sure"]["indicator"] == "warning"
    assert cards["unsure"]["indicator"] == "info"
    assert cards["unsure"]["summary"].startswith("Low confidence:")
    assert "review it as a prompt" in cards["unsure"]["detail"]
    assert guardrail_events(app) == ["below-confidence-floor"]


def test_no_more_than_the_model_cards_maximum(app, client, auth, scripted):
    scripted([advice(f"rule-{index}") for index in range(5)])
    assert len(sign(client, auth)) == 3
    assert guardrail_events(app) == ["max-cards", "max-cards"]


def test_a_card_the_clinician_overrode_is_not_repeated_for_them(app, client, auth):
    (card,) = sign(client, auth)
    item = {
        "card": card["uuid"],
        "outcome": "overridden",
        "outcomeTimestamp": moment(),
        "overrideReason": {"reason": {"system": NON_ADHERENCE, "code": "patient-contraindication"}},
    }
    assert client.post(FEEDBACK, json={"feedback": [item]}, headers=auth(FEEDBACK)).status_code == 200
    assert sign(client, auth) == []
    assert guardrail_events(app) == ["recently-overridden"]
    assert len(sign(client, auth, user="Practitioner/another-prescriber")) == 1


def test_proposed_resources_are_labelled_and_carry_the_suggestion_identifier(client, auth):
    draft = medication_request("d1", dose_mg=1000, per_day=2)
    body = order_sign_request([draft], full_prefetch(egfr_value=38))
    (card,) = client.post(SERVICE, json=body, headers=auth(SERVICE)).get_json()["cards"]
    suggestion = card["suggestions"][0]
    resource = suggestion["actions"][0]["resource"]
    assert {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{suggestion['uuid']}"} in resource[
        "identifier"
    ]
    assert any(label["code"] == "AIAST" for label in resource["meta"]["security"])


def test_a_high_risk_model_never_sends_a_create_action_and_holds_it_for_signed_review(
    app, client, auth, scripted
):
    note = {
        "resourceType": "DocumentReference",
        "status": "current",
        "docStatus": "preliminary",
        "subject": {"reference": "Patient/pat-renal-001"},
        "content": [{"attachment": {"contentType": "text/markdown", "data": "IyBEcmFmdA=="}}],
    }
    draft = Advice(
        summary="Discharge summary draft ready for review",
        indicator="info",
        rationale="Drafted from the encounter.",
        confidence=0.9,
        source=SOURCE,
        evidence=(Evidence("MedicationRequest/d1", "the draft"),),
        suggestions=(
            ProposedSuggestion("File the summary", (ProposedAction("create", "File it", note),), True),
        ),
        rule_id="draft",
    )
    scripted([draft], risk_tier="high")
    (card,) = sign(client, auth)
    assert "suggestions" not in card
    assert card["extension"]["health.countersign.ai"]["reviewRequired"] is True
    (link,) = card["links"]
    assert link["type"] == "smart"
    assert json.loads(link["appContext"]) == {"card": card["uuid"], "review": True}
    with app.extensions[DATABASE_KEY].connect() as connection:
        held = connection.execute(
            text("SELECT held_for_review FROM issued_card WHERE uuid = :uuid"), {"uuid": card["uuid"]}
        ).scalar_one()
    (suggestion,) = json.loads(held) if isinstance(held, str) else held
    resource = suggestion["actions"][0]["resource"]
    assert resource["resourceType"] == "DocumentReference"
    assert any(label["code"] == "AIAST" for label in resource["meta"]["security"])
    assert guardrail_events(app) == ["held-for-review"]


def test_a_moderate_risk_model_sends_its_create_action_as_a_suggestion(client, auth, scripted):
    condition = {"resourceType": "Condition", "subject": {"reference": "Patient/pat-renal-001"}}
    created = Advice(
        summary="Add a problem",
        indicator="info",
        rationale="Because.",
        confidence=0.9,
        source=SOURCE,
        evidence=(Evidence("MedicationRequest/d1", "the draft"),),
        suggestions=(ProposedSuggestion("Add", (ProposedAction("create", "Add it", condition),), True),),
        rule_id="add",
    )
    scripted([created], risk_tier="moderate")
    (card,) = sign(client, auth)
    assert card["suggestions"][0]["actions"][0]["type"] == "create"
