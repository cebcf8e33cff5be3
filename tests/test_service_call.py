"""Service calls: request validation (reference §9.3), response rules (§9.5), durable record."""

from __future__ import annotations

import json
import uuid

import pytest
from sqlmodel import Session, select

from app import DATABASE_KEY
from app.audit.tables import CardSet, IssuedCard
from tests.builders import (
    USER_ID,
    full_prefetch,
    medication_request,
    order_sign_request,
)
from tests.card_rules import response_problems

PATH = "/cds-services/medication-safety"
FHIR_AUTHORIZATION = {
    "access_token": "t",
    "token_type": "Bearer",
    "expires_in": 300,
    "scope": "user/*.read",
    "subject": "cs",
}


def post(client, auth, body, path: str = PATH, **kwargs):
    return client.post(path, json=body, headers=auth(path), **kwargs)


def assert_outcome(response, status: int, expression: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert body["resourceType"] == "OperationOutcome"
    assert body["issue"][0]["severity"] == "error"
    if expression is not None:
        locations = body["issue"][0].get("expression", [])
        assert any(loc == expression or loc.startswith(f"{expression}.") for loc in locations), body
    return body


def test_metformin_with_egfr_25_gets_a_critical_card_that_conforms(client, auth):
    response = post(client, auth, order_sign_request([medication_request("draft-metformin")]))
    assert response.status_code == 200
    body = response.get_json()
    assert response_problems(body) == []
    card = body["cards"][0]
    assert card["indicator"] == "critical"
    assert "metformin" in card["summary"].lower()
    assert card["source"]["label"].startswith("Countersign Medication Safety")
    assert card["source"]["url"].endswith("/app/models/medication-safety")
    assert "AI-generated" in card["detail"] and "Confidence" in card["detail"]
    action = card["suggestions"][0]["actions"][0]
    assert action == {**action, "type": "delete", "resourceId": "MedicationRequest/draft-metformin"}
    assert card["links"][0]["type"] == "smart"
    assert json.loads(card["links"][0]["appContext"]) == {"card": card["uuid"]}


def test_clean_chart_returns_exactly_empty_cards(client, auth):
    body = order_sign_request([medication_request("d1")], full_prefetch(egfr_value=92))
    response = post(client, auth, body)
    assert response.status_code == 200
    assert response.get_json() == {"cards": []}


def test_the_card_set_is_recorded_durably_with_its_cards(app, client, auth):
    request = order_sign_request([medication_request("draft-metformin")])
    card = post(client, auth, request).get_json()["cards"][0]
    with Session(app.extensions[DATABASE_KEY]) as session:
        card_set = session.exec(select(CardSet)).one()
        issued = session.exec(select(IssuedCard)).one()
    assert card_set.hook_instance == request["hookInstance"]
    assert (card_set.service_id, card_set.hook, card_set.model_id) == (
        "medication-safety",
        "order-sign",
        "medication-safety",
    )
    assert card_set.patient_id == "pat-renal-001" and card_set.user_id == USER_ID
    assert "MedicationRequest/draft-metformin" in card_set.input_refs
    assert any(ref.startswith("Observation/") for ref in card_set.input_refs)
    assert issued.uuid == card["uuid"]
    assert issued.suggestion_uuids == [s["uuid"] for s in card["suggestions"]]
    assert issued.card == card


def test_an_empty_response_is_recorded_too(app, client, auth):
    post(client, auth, order_sign_request([medication_request("d1")], full_prefetch(egfr_value=92)))
    with Session(app.extensions[DATABASE_KEY]) as session:
        assert len(session.exec(select(CardSet)).all()) == 1
        assert session.exec(select(IssuedCard)).all() == []


def test_truncated_json_is_400(client, auth):
    response = client.post(
        PATH, data=b'{"hook": "order-sign",', headers=auth(PATH) | {"Content-Type": "application/json"}
    )
    assert_outcome(response, 400)


def test_text_plain_is_415(client, auth):
    body = json.dumps(order_sign_request([medication_request("d1")]))
    response = client.post(PATH, data=body, headers=auth(PATH) | {"Content-Type": "text/plain"})
    assert_outcome(response, 415)


@pytest.mark.parametrize("member", ["hook", "hookInstance", "context"])
def test_missing_required_member_is_400(client, auth, member):
    body = order_sign_request([medication_request("d1")])
    del body[member]
    assert_outcome(post(client, auth, body), 400, member)


def test_non_uuid_hook_instance_is_400(client, auth):
    body = order_sign_request([medication_request("d1")], hookInstance="call-42")
    assert_outcome(post(client, auth, body), 400, "hookInstance")


def test_explicit_null_member_is_400(client, auth):
    body = order_sign_request([medication_request("d1")], fhirServer=None)
    assert_outcome(post(client, auth, body), 400)


def test_wrong_hook_for_the_service_is_400(client, auth):
    body = order_sign_request([medication_request("d1")])
    body["hook"] = "patient-view"
    assert_outcome(post(client, auth, body), 400, "hook")


def test_unknown_service_is_404(client, auth):
    path = "/cds-services/does-not-exist"
    assert_outcome(post(client, auth, order_sign_request([]), path=path), 404)


def test_get_on_a_service_is_405(client, auth):
    response = client.get(PATH, headers=auth(PATH))
    assert_outcome(response, 405)


@pytest.mark.parametrize("field", ["userId", "patientId", "draftOrders"])
def test_missing_context_field_is_400(client, auth, field):
    body = order_sign_request([medication_request("d1")])
    del body["context"][field]
    assert_outcome(post(client, auth, body), 400, f"context.{field}")


@pytest.mark.parametrize("user_id", ["abc", "Patient/123", "Practitioner/"])
def test_bad_user_id_is_400(client, auth, user_id):
    body = order_sign_request([medication_request("d1")])
    body["context"]["userId"] = user_id
    assert_outcome(post(client, auth, body), 400, "context.userId")


def test_practitioner_role_user_is_accepted(client, auth):
    body = order_sign_request([medication_request("d1")])
    body["context"]["userId"] = "PractitionerRole/role-7"
    assert post(client, auth, body).status_code == 200


def test_draft_orders_not_a_bundle_is_400(client, auth):
    body = order_sign_request([medication_request("d1")])
    body["context"]["draftOrders"] = [medication_request("d1")]
    assert_outcome(post(client, auth, body), 400, "context.draftOrders")


def order_select(selections: list[str]) -> dict:
    body = order_sign_request([medication_request("d1"), medication_request("d2")])
    body["hook"] = "order-select"
    body["context"]["selections"] = selections
    return body


def test_order_select_without_selections_is_400(client, auth):
    body = order_select(["MedicationRequest/d1"])
    del body["context"]["selections"]
    assert_outcome(post(client, auth, body), 400, "context.selections")


def test_order_select_with_a_selection_not_in_draft_orders_is_400(client, auth):
    assert_outcome(post(client, auth, order_select(["MedicationRequest/zz"])), 400, "context.selections")


def test_order_select_reviews_the_selected_order(client, auth):
    body = post(client, auth, order_select(["MedicationRequest/d2"])).get_json()
    assert response_problems(body) == []
    actions = [a for c in body["cards"] for s in c.get("suggestions", []) for a in s.get("actions", [])]
    assert {a.get("resourceId") for a in actions} == {"MedicationRequest/d2"}


def test_fhir_authorization_without_fhir_server_is_400(client, auth):
    body = order_sign_request([medication_request("d1")], fhirAuthorization=FHIR_AUTHORIZATION)
    assert_outcome(post(client, auth, body), 400)


@pytest.mark.parametrize(
    "change",
    [{"token_type": "mac"}, {"access_token": None}, {"expires_in": "300"}],
)
def test_malformed_fhir_authorization_is_400(client, auth, change):
    token = {k: v for k, v in (FHIR_AUTHORIZATION | change).items() if v is not None}
    body = order_sign_request(
        [medication_request("d1")], fhirServer="https://ehr.example/fhir", fhirAuthorization=token
    )
    assert_outcome(post(client, auth, body), 400, "fhirAuthorization")


def test_plain_http_fhir_server_is_refused_in_production_mode(make_app, auth):
    client = make_app(require_https_fhir=True).test_client()
    body = order_sign_request([medication_request("d1")], fhirServer="http://ehr.example/fhir")
    assert_outcome(post(client, auth, body), 400, "fhirServer")


def test_oversized_body_is_413(make_app, auth):
    client = make_app(max_body_bytes=1024 * 1024).test_client()
    body = b'{"hook": "order-sign", "padding": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    response = client.post(PATH, data=body, headers=auth(PATH) | {"Content-Type": "application/json"})
    assert_outcome(response, 413)


def test_unknown_members_and_extensions_are_ignored(client, auth):
    body = order_sign_request(
        [medication_request("d1")], somethingNew=1, extension={"com.example.x": {"a": 1}}
    )
    assert post(client, auth, body).status_code == 200


def test_undeclared_prefetch_key_is_ignored(client, auth):
    prefetch = full_prefetch(egfr_value=92) | {"sneaky": {"resourceType": "Observation", "id": "x"}}
    body = order_sign_request([medication_request("d1")], prefetch)
    assert post(client, auth, body).get_json() == {"cards": []}


def test_engine_failure_is_500_with_outcome_not_empty_cards(app, auth, monkeypatch):
    catalogue = app.extensions["cds_hooks"].backend.catalogue

    class Broken:
        def suggest(self, data):
            raise RuntimeError("model crashed")

    broken = catalogue["medication-safety"].with_version("1.0.0", Broken())
    monkeypatch.setitem(catalogue, "medication-safety", broken)
    response = post(app.test_client(), auth, order_sign_request([medication_request("d1")]))
    assert_outcome(response, 500)


def test_long_rationale_summary_is_cut_below_140(client, auth):
    body = order_sign_request([medication_request("d1")])
    response = post(client, auth, body).get_json()
    assert all(len(card["summary"]) < 140 for card in response["cards"])


def test_each_call_gets_fresh_uuids(client, auth):
    first = post(client, auth, order_sign_request([medication_request("d1")])).get_json()["cards"][0]
    second = post(client, auth, order_sign_request([medication_request("d1")])).get_json()["cards"][0]
    assert first["uuid"] != second["uuid"]
    uuid.UUID(first["uuid"])


def test_proposed_update_resource_is_labelled_ai_asserted(client, auth):
    draft = medication_request("draft-capped", dose_mg=1000, per_day=2)
    body = order_sign_request([draft], full_prefetch(egfr_value=38))
    card = post(client, auth, body).get_json()["cards"][0]
    suggestion = card["suggestions"][0]
    resource = suggestion["actions"][0]["resource"]
    assert suggestion["actions"][0]["type"] == "update"
    assert any(label["code"] == "AIAST" for label in resource["meta"]["security"])
    assert {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{suggestion['uuid']}"} in resource[
        "identifier"
    ]
    assert resource["id"] == "draft-capped"
