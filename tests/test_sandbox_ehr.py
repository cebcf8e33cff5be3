"""The sandbox EHR as a CDS client, end to end without a browser: real FHIR server, Countersign on
a real HTTP port, the EHR's own key. What a clinician would see (cards) and what lands in the record."""

from __future__ import annotations

import pytest
import requests
from joserfc.jwk import ECKey

from sandbox.ehr.cds_client import CdsCallError, CdsClient, ClientIdentity
from tests.sandbox_fixtures import drain_outbox
from tests.tokens import verified
from tests.writeback_helpers import NON_ADHERENCE, search

pytestmark = pytest.mark.integration
CLINICIAN = "Practitioner/cs-dr-hale"


def client_for(countersign, fhir_server: str, identity: ClientIdentity) -> CdsClient:
    return CdsClient(f"{countersign.url}/cds-services", identity, fhir_server)


def post(ehr, path: str, body: dict | None = None) -> dict:
    response = ehr.post(path, json=body or {})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def rule_of(item: dict) -> str:
    return item["card"]["extension"]["health.countersign.ai"]["rule"]


def draft_and_sign(sandbox, patient_id: str, *orderables: str) -> dict:
    ehr = sandbox.test_client()
    for orderable in orderables:
        post(ehr, f"/api/patients/{patient_id}/drafts", {"orderable": orderable})
    return post(ehr, f"/api/patients/{patient_id}/sign")


def test_prefetch_is_filled_from_discovery_and_run_on_the_ehr_fhir_server(
    countersign, fhir_server, identity, fresh_patient
):
    client = client_for(countersign, fhir_server, identity)
    entries = {(e.id, e.hook): e for e in client.discover()}
    sign = entries[("medication-safety", "order-sign")]
    discovery = requests.get(f"{countersign.url}/cds-services", timeout=10).status_code
    assert discovery == 401  # discovery too needs the EHR's signed token
    patient_id = fresh_patient("cs-renal-metformin")
    context = {
        "userId": CLINICIAN,
        "patientId": patient_id,
        "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": []},
    }

    body = client.request_body(sign, context)

    assert set(body["prefetch"]) == set(sign.prefetch)
    assert body["prefetch"]["patient"]["id"] == patient_id
    egfrs = [e["resource"]["valueQuantity"]["value"] for e in body["prefetch"]["renalFunction"]["entry"]]
    assert egfrs == [25, 33, 41]  # the service asked for _sort=-date
    active = [e["resource"]["id"] for e in body["prefetch"]["medications"]["entry"]]
    assert f"{patient_id}-metformin" in active
    assert body["fhirServer"] == fhir_server


def test_the_ehr_signs_each_call_with_its_own_key_and_a_stranger_is_refused(
    countersign, fhir_server, identity, tmp_path
):
    token = identity.token(f"{countersign.url}/cds-services")
    key = ECKey.import_key(identity.jwks()["keys"][0])
    checked = verified(token, key, "ES384", f"{countersign.url}/cds-services")
    assert checked.claims["iss"] == identity.issuer
    assert checked.header["kid"] == identity.kid
    assert client_for(countersign, fhir_server, identity).discover()

    stranger = ClientIdentity.in_directory(tmp_path)  # same issuer and kid, different key
    with pytest.raises(CdsCallError, match="401"):
        client_for(countersign, fhir_server, stranger).discover()


def test_accepting_the_renal_dose_card_updates_the_order_and_overriding_records_the_reason(
    countersign, sandbox, fhir_server, fresh_patient
):
    patient_id = fresh_patient("cs-renal-metformin")
    ehr = sandbox.test_client()
    selected = post(ehr, f"/api/patients/{patient_id}/drafts", {"orderable": "gabapentin-300-tid"})
    assert [rule_of(c) for c in selected["cards"]] == ["gabapentin-egfr-15-30"]
    post(ehr, f"/api/patients/{patient_id}/drafts", {"orderable": "ibuprofen-400-tid"})

    signing = post(ehr, f"/api/patients/{patient_id}/sign")
    cards = {rule_of(c): c for c in signing["cards"]}
    assert set(cards) == {"gabapentin-egfr-15-30", "nsaid-egfr-below-30"}
    renal = cards["gabapentin-egfr-15-30"]["card"]
    assert "<strong>Evidence used</strong>" in cards["gabapentin-egfr-15-30"]["detailHtml"]

    applied = post(ehr, f"/api/cards/{renal['uuid']}/accept", {"suggestion": renal["suggestions"][0]["uuid"]})
    assert applied["applied"][0].startswith("MedicationRequest/")
    nsaid = cards["nsaid-egfr-below-30"]["card"]
    post(
        ehr,
        f"/api/cards/{nsaid['uuid']}/override",
        {"reason": "risk-benefit-ratio", "comment": "Three days only, with renal monitoring"},
    )
    signed = post(ehr, f"/api/patients/{patient_id}/sign/complete")["signed"]
    assert {o["status"] for o in signed} == {"active"}

    orders = search(fhir_server, "MedicationRequest", patient=patient_id, status="active")
    gabapentin = next(o for o in orders if "gabapentin" in o["medicationCodeableConcept"]["text"])
    dose = gabapentin["dosageInstruction"][0]
    assert dose["doseAndRate"][0]["doseQuantity"]["value"] == 600
    assert dose["timing"]["repeat"]["frequency"] == 1
    assert any(label["code"] == "AIAST" for label in gabapentin["meta"]["security"])

    drain_outbox(countersign)
    provenances = search(fhir_server, "Provenance", entity=f"Patient/{patient_id}")
    accepted = next(p for p in provenances if "verifier" in str(p["agent"]))
    agents = {a["type"]["coding"][0]["code"]: a["who"]["reference"] for a in accepted["agent"]}
    assert agents["verifier"] == CLINICIAN and agents["author"].startswith("Device/")
    assert accepted["target"][0]["reference"].startswith(f"MedicationRequest/{gabapentin['id']}/_history/")
    tasks = search(fhir_server, "Task", patient=patient_id)
    assert [(c["system"], c["code"]) for t in tasks for c in t["statusReason"]["coding"]] == [
        (NON_ADHERENCE, "risk-benefit-ratio")
    ]
    assert tasks[0]["note"][0]["text"] == "Three days only, with renal monitoring"


def test_renewing_metformin_at_egfr_25_is_contraindicated_and_accepting_cancels_the_draft(
    countersign, sandbox, fhir_server, fresh_patient
):
    patient_id = fresh_patient("cs-renal-metformin")
    signing = draft_and_sign(sandbox, patient_id, "metformin-1000-bid")
    [item] = signing["cards"]
    assert (rule_of(item), item["card"]["indicator"]) == ("metformin-egfr-below-30", "critical")
    suggestion = item["card"]["suggestions"][0]
    assert suggestion["actions"][0]["type"] == "delete"

    post(
        sandbox.test_client(), f"/api/cards/{item['card']['uuid']}/accept", {"suggestion": suggestion["uuid"]}
    )

    assert search(fhir_server, "MedicationRequest", patient=patient_id, status="draft") == []


@pytest.mark.parametrize(
    ("story", "orderable", "rule", "indicator"),
    [
        ("cs-metformin-moderate", "metformin-1000-bid", "metformin-egfr-30-45", "warning"),
        ("cs-warfarin-nsaid", "naproxen-500-bid", "warfarin-nsaid", "warning"),
        ("cs-penicillin-allergy", "amoxicillin-500-tid", "penicillin-allergy", "critical"),
        ("cs-statin-clarithromycin", "clarithromycin-500-bid", "simvastatin-clarithromycin", "critical"),
        ("cs-duplicate-ppi", "pantoprazole-40-daily", "duplicate-proton-pump-inhibitor", "warning"),
        ("cs-ace-spironolactone", "spironolactone-25-daily", "raas-potassium-sparing", "warning"),
    ],
)
def test_each_medication_safety_story_gets_its_card(
    sandbox, fresh_patient, story, orderable, rule, indicator
):
    signing = draft_and_sign(sandbox, fresh_patient(story), orderable)
    assert [(rule_of(c), c["card"]["indicator"]) for c in signing["cards"]] == [(rule, indicator)]


@pytest.mark.parametrize(
    ("story", "orderable"),
    [
        ("cs-clean-chart", "amoxicillin-500-tid"),
        ("cs-hypertension-stable", "atorvastatin-20-daily"),
        ("cs-child-asthma", "amoxicillin-500-tid"),  # penicillin allergy, but a child: outside intended use
    ],
)
def test_negative_stories_get_no_card(sandbox, fresh_patient, story, orderable):
    ehr, patient_id = sandbox.test_client(), fresh_patient(story)
    assert post(ehr, f"/api/patients/{patient_id}/patient-view")["cards"] == []
    assert draft_and_sign(sandbox, patient_id, orderable)["cards"] == []


def test_discharge_fires_the_hook_and_finishes_the_encounter(sandbox, fhir_server, fresh_patient):
    patient_id = fresh_patient("cs-discharge-high-lace")
    ehr = sandbox.test_client()
    assert post(ehr, f"/api/patients/{patient_id}/discharge")["hook"] == "encounter-discharge"
    assert post(ehr, f"/api/patients/{patient_id}/discharge/complete")["status"] == "finished"
    [encounter] = search(fhir_server, "Encounter", _id=f"{patient_id}-admission")
    assert encounter["status"] == "finished" and encounter["period"]["end"]
    refused = ehr.post(f"/api/patients/{patient_id}/discharge", json={})
    assert refused.status_code == 409


def test_the_chart_and_patient_list_show_the_record(sandbox, fresh_patient):
    ehr = sandbox.test_client()
    patient_id = fresh_patient("cs-renal-metformin")
    page = ehr.get(f"/patients/{patient_id}").get_data(as_text=True)
    for shown in (
        "ELLISON, Margaret",
        "Chronic kidney disease stage 4",
        "metformin hydrochloride 500 MG",
        "Penicillin (Eruption of skin)",
        "eGFR (CKD-EPI 2021)",
        "25 mL/min/1.73m2",
    ):
        assert shown in page
    listing = ehr.get("/").get_data(as_text=True)
    assert f"/patients/{patient_id}" in listing and "On metformin with eGFR 25" in listing


def test_bad_requests_get_precise_operation_outcomes(sandbox, fresh_patient):
    ehr = sandbox.test_client()
    patient_id = fresh_patient("cs-renal-metformin")

    def refused(path: str, body: dict, status: int, text: str) -> None:
        response = ehr.post(path, json=body)
        assert response.status_code == status, response.get_json()
        outcome = response.get_json()
        assert outcome["resourceType"] == "OperationOutcome"
        assert text in outcome["issue"][0]["diagnostics"]

    refused(f"/api/patients/{patient_id}/drafts", {"orderable": "heroin"}, 400, "order list")
    refused("/api/patients/bad$id/patient-view", {}, 400, "FHIR id")
    refused("/api/patients/no-such-patient/patient-view", {}, 404, "404")
    refused(
        "/api/cards/00000000-0000-4000-8000-000000000000/accept",
        {"suggestion": "00000000-0000-4000-8000-000000000001"},
        404,
        "no card",
    )
    refused(f"/api/patients/{patient_id}/sign", {}, 409, "no draft orders")

    signing = draft_and_sign(sandbox, patient_id, "ibuprofen-400-tid")
    card = signing["cards"][0]["card"]
    refused(f"/api/cards/{card['uuid']}/override", {"reason": "felt-like-it"}, 400, "does not offer")
    refused(f"/api/cards/{card['uuid']}/override", {}, 400, "choose one")
    post(ehr, f"/api/cards/{card['uuid']}/override", {"reason": "need-more-info"})
    refused(f"/api/cards/{card['uuid']}/override", {"reason": "need-more-info"}, 409, "already")
    as_text = ehr.post(f"/api/patients/{patient_id}/drafts", data="x", content_type="text/plain")
    assert as_text.status_code == 415


def service_of(item: dict) -> str:
    return item["card"]["source"]["topic"]["code"]


@pytest.mark.parametrize(
    ("story", "rule"),
    [
        ("cs-hba1c-gap", "type-2-diabetes"),
        ("cs-levothyroxine-gap", "hypothyroidism"),
        ("cs-ckd-gap", "chronic-kidney-disease"),
    ],
)
def test_opening_each_problem_list_story_shows_its_gap(sandbox, fresh_patient, story, rule):
    cards = post(sandbox.test_client(), f"/api/patients/{fresh_patient(story)}/patient-view")["cards"]
    assert [(service_of(c), rule_of(c)) for c in cards] == [("problem-list-gaps", rule)]


def test_a_high_lace_discharge_gets_the_risk_card_and_a_draft_held_for_review(sandbox, fresh_patient):
    cards = post(sandbox.test_client(), f"/api/patients/{fresh_patient('cs-discharge-high-lace')}/discharge")[
        "cards"
    ]
    by_service = {service_of(c): c["card"] for c in cards}
    assert set(by_service) == {"readmission-risk", "discharge-summary-draft"}
    assert by_service["readmission-risk"]["summary"].startswith("High risk of readmission: LACE index")
    draft = by_service["discharge-summary-draft"]
    assert "suggestions" not in draft and draft["extension"]["health.countersign.ai"]["reviewRequired"]


def test_a_low_lace_discharge_gets_only_the_draft(sandbox, fresh_patient):
    cards = post(sandbox.test_client(), f"/api/patients/{fresh_patient('cs-discharge-low-lace')}/discharge")[
        "cards"
    ]
    assert [service_of(c) for c in cards] == ["discharge-summary-draft"]
