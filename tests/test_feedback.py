"""Feedback (reference §9.6 F1-F13): validation, idempotency, attribution to the right service."""

from __future__ import annotations

import pytest
from sqlmodel import Session, select

from app import DATABASE_KEY
from app.audit.tables import CardDecision
from tests.builders import medication_request, moment, order_sign_request


@pytest.fixture
def database_url(both_databases: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return both_databases


SERVICE = "/cds-services/medication-safety"
FEEDBACK = SERVICE + "/feedback"
NON_ADHERENCE = "http://terminology.hl7.org/CodeSystem/non-adherence-reason-codes"


@pytest.fixture
def issued_cards(client, auth) -> list[dict]:
    """Two real cards from two real calls (metformin at eGFR 25)."""
    cards = []
    for draft_id in ("d1", "d2"):
        body = order_sign_request([medication_request(draft_id)])
        cards.extend(client.post(SERVICE, json=body, headers=auth(SERVICE)).get_json()["cards"])
    return cards


def accepted(card: dict) -> dict:
    return {
        "card": card["uuid"],
        "outcome": "accepted",
        "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}],
        "outcomeTimestamp": moment(),
    }


def overridden(card: dict, **reason: object) -> dict:
    item = {"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": moment()}
    if reason:
        item["overrideReason"] = reason
    return item


def send(client, auth, items: list[dict] | dict, path: str = FEEDBACK):
    body = {"feedback": items} if isinstance(items, list) else items
    return client.post(path, json=body, headers=auth(path))


def decisions(app) -> list[CardDecision]:
    with Session(app.extensions[DATABASE_KEY]) as session:
        return list(session.exec(select(CardDecision)))


def test_accepted_feedback_is_stored_once(app, client, auth, issued_cards):
    response = send(client, auth, [accepted(issued_cards[0])])
    assert response.status_code == 200
    stored = decisions(app)
    assert [(d.card_uuid, d.outcome) for d in stored] == [(issued_cards[0]["uuid"], "accepted")]
    assert stored[0].accepted_suggestions == [issued_cards[0]["suggestions"][0]["uuid"]]


def test_resent_feedback_has_no_duplicate_effect(app, client, auth, issued_cards):
    item = accepted(issued_cards[0])
    assert send(client, auth, [item]).status_code == 200
    assert send(client, auth, [item]).status_code == 200
    assert len(decisions(app)) == 1


def test_override_without_reason_is_accepted(app, client, auth, issued_cards):
    assert send(client, auth, [overridden(issued_cards[0])]).status_code == 200
    assert decisions(app)[0].override_code is None


def test_override_reason_without_display_is_accepted_and_recorded(app, client, auth, issued_cards):
    item = overridden(
        issued_cards[0],
        reason={"system": NON_ADHERENCE, "code": "patient-contraindication"},
        userComment="Nephrology advised continuing at this dose.",
    )
    assert send(client, auth, [item]).status_code == 200
    decision = decisions(app)[0]
    assert (decision.override_system, decision.override_code) == (NON_ADHERENCE, "patient-contraindication")
    assert decision.user_comment == "Nephrology advised continuing at this dose."


@pytest.mark.parametrize("outcome", ["ignored", "rejected"])
def test_outcomes_other_than_accepted_or_overridden_are_400(client, auth, issued_cards, outcome):
    item = overridden(issued_cards[0]) | {"outcome": outcome}
    assert send(client, auth, [item]).status_code == 400


def test_accepted_without_accepted_suggestions_is_400(client, auth, issued_cards):
    item = accepted(issued_cards[0])
    del item["acceptedSuggestions"]
    assert send(client, auth, [item]).status_code == 400


def test_empty_override_reason_is_400(client, auth, issued_cards):
    assert send(client, auth, [overridden(issued_cards[0]) | {"overrideReason": {}}]).status_code == 400


@pytest.mark.parametrize("timestamp", ["yesterday", "2026-11-23T10:05:31", "2026-11-23"])
def test_timestamp_without_zone_or_not_rfc3339_is_400(client, auth, issued_cards, timestamp):
    item = accepted(issued_cards[0]) | {"outcomeTimestamp": timestamp}
    response = send(client, auth, [item])
    assert response.status_code == 400
    assert response.get_json()["resourceType"] == "OperationOutcome"


@pytest.mark.parametrize("body", [{"feedback": []}, {}, {"feedback": "accepted"}])
def test_empty_or_missing_feedback_array_is_400(client, auth, body):
    assert send(client, auth, body).status_code == 400


def test_a_batch_of_three_items_for_two_cards_is_all_recorded(app, client, auth, issued_cards):
    first, second = issued_cards
    items = [accepted(first), overridden(first, userComment="changed my mind"), overridden(second)]
    assert send(client, auth, items).status_code == 200
    assert sorted(d.card_uuid for d in decisions(app)) == sorted(
        [first["uuid"], first["uuid"], second["uuid"]]
    )


def test_token_for_the_service_url_is_refused_at_feedback(client, sign, issued_cards):
    token = sign("http://localhost" + SERVICE)
    body = {"feedback": [accepted(issued_cards[0])]}
    response = client.post(FEEDBACK, json=body, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


def test_unknown_card_is_404_and_nothing_of_the_batch_is_stored(app, client, auth, issued_cards):
    unknown = accepted(issued_cards[0]) | {"card": "0d6f4b53-9a9f-4f0e-9a59-7d2f0f7f3a11"}
    response = send(client, auth, [accepted(issued_cards[1]), unknown])
    assert response.status_code == 404
    assert "0d6f4b53-9a9f-4f0e-9a59-7d2f0f7f3a11" in response.get_json()["issue"][0]["diagnostics"]
    assert decisions(app) == []


def test_suggestion_from_another_card_is_400(app, client, auth, issued_cards):
    first, second = issued_cards
    item = accepted(first) | {"acceptedSuggestions": [{"id": second["suggestions"][0]["uuid"]}]}
    assert send(client, auth, [item]).status_code == 400
    assert decisions(app) == []


def test_feedback_to_another_service_is_never_attributed(app, client, auth, issued_cards):
    response = send(client, auth, [accepted(issued_cards[0])], path="/cds-services/other-service/feedback")
    assert response.status_code == 404
    assert decisions(app) == []
