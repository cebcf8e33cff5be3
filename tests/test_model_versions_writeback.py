"""Model versions written back to a strict FHIR server (ours in Node, and HAPI FHIR): each act of a
promotion (propose, withdraw, approve, rollback) as a change-control AuditEvent with a signed
Provenance, the status changes the acts make, a shadow version's run as an AuditEvent of subtype
``shadow`` and nothing else, and every card set naming the exact version that produced it."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
import requests
from joserfc.jwk import KeySet
from sqlmodel import Session, select

from app import DATABASE_KEY, WORKER_KEY
from app.audit.outbox import CARD_SET, DELIVERED, MODEL_PROMOTION, SHADOW_CARD_SET
from app.audit.tables import CardSet, IssuedCard
from app.governance.change_control import Governor
from app.governance.promotion import approve, propose, rollback, withdraw
from app.writeback.fhir_writer import DeliveryError
from fhir_profiles.change_control import PromotionFacts, promotion_audit_event, promotion_provenance
from fhir_profiles.common import DELIVERY_TAG_SYSTEM
from fhir_profiles.device import MODEL_VERSION_SYSTEM
from fhir_profiles.signature import verify
from tests.builders import egfr, full_prefetch, medication_request, order_sign_request, patient, searchset
from tests.governance_helpers import CMIO, SAFETY_OFFICER, change, registry
from tests.hapi_helpers import search_all
from tests.writeback_helpers import IBUPROFEN, SERVICE, WARFARIN, put, statuses, writeback_settings

pytestmark = pytest.mark.integration
MODEL = "medication-safety"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
GOVERNANCE = "https://countersign.health/fhir/CodeSystem/ai-governance-event"
FHIR_JSON = {"Content-Type": "application/fhir+json"}


@pytest.fixture(params=["node", pytest.param("hapi", marks=pytest.mark.hapi)])
def strict_fhir(request: pytest.FixtureRequest) -> str:
    return request.getfixturevalue("fhir_server" if request.param == "node" else "hapi_server")


@pytest.fixture
def wb_app(make_app, strict_fhir):
    for governor in (CMIO, SAFETY_OFFICER):  # HAPI's first write warms its validator up: minutes
        kind, id_ = governor.reference.split("/")
        body = {"resourceType": kind, "id": id_, "name": [{"text": governor.name}]}
        answer = requests.put(
            f"{strict_fhir}/{governor.reference}", json=body, headers=FHIR_JSON, timeout=300
        )
        assert answer.status_code in (200, 201), answer.text
    return make_app(**writeback_settings(strict_fhir))


def act(app, target: str, step, *args, governor: Governor, reason: str):
    return step(app.extensions[DATABASE_KEY], registry(app), *args, governor=governor, reason=reason,
                writeback_target=target)  # fmt: skip


def sign_order(client, auth, fhir_base: str) -> str:
    """A clinician signs metformin at eGFR 38 and ibuprofen while on warfarin; the chart is on the
    server, the drafts are not. Returns the patient's id."""
    patient_id = f"mv{uuid.uuid4().hex[:12]}"
    put(fhir_base, patient(patient_id))
    warfarin = medication_request(
        f"war-{patient_id}", WARFARIN, status="active", dose_mg=5, per_day=1, patient_id=patient_id
    )
    renal = egfr(38, obs_id=f"egfr-{patient_id}", patient_id=patient_id)
    for on_record in (warfarin, renal):
        put(fhir_base, on_record)
    drafts = [
        medication_request(f"met-{patient_id}", dose_mg=1000, per_day=2, patient_id=patient_id),
        medication_request(f"ibu-{patient_id}", IBUPROFEN, dose_mg=600, per_day=3, patient_id=patient_id),
    ]
    prefetch = full_prefetch(patient_id=patient_id) | {
        "medications": searchset([warfarin]),
        "renalFunction": searchset([renal]),
    }
    body = order_sign_request(drafts, prefetch, patient_id=patient_id, fhirServer=fhir_base)
    response = client.post(SERVICE, json=body, headers=auth(SERVICE))
    assert response.status_code == 200, response.text
    return patient_id


def device(fhir_base: str, version: str) -> str:
    (found,) = search_all(fhir_base, "Device", identifier=f"{MODEL_VERSION_SYSTEM}|{MODEL}-{version}")
    return f"Device/{found['id']}"


def change_control_events(fhir_base: str, device_ref: str, reason: str) -> dict[str, dict]:
    """The E9 AuditEvents naming the Device whose outcomeDesc carries ``reason``, by governance code."""
    events = [
        e
        for e in search_all(fhir_base, "AuditEvent", entity=device_ref)
        if reason in e.get("outcomeDesc", "")
    ]
    by_code = {e["subtype"][1]["code"]: e for e in events}
    assert len(by_code) == len(events), [e["subtype"] for e in events]
    for event in events:
        assert (event["type"]["code"], event["action"]) == ("110113", "U")
        assert event["subtype"][0] == {"system": DCM, "code": "110131", "display": "Software Configuration"}
        assert event["subtype"][1]["system"] == GOVERNANCE
    return by_code


def card_sets(app, disposition: str) -> list[CardSet]:
    with Session(app.extensions[DATABASE_KEY]) as session:
        query = select(CardSet).where(CardSet.disposition == disposition).order_by(CardSet.id)
        return list(session.exec(query))


def issued_cards(app, card_set: CardSet) -> int:
    with Session(app.extensions[DATABASE_KEY]) as session:
        return len(session.exec(select(IssuedCard).where(IssuedCard.card_set_id == card_set.id)).all())


def key_set(app) -> KeySet:
    key = app.extensions[WORKER_KEY].sender.key
    return KeySet.import_key_set({"keys": [key.key.as_dict(private=False, kid=key.kid)]})


def test_promotion_acts_status_changes_and_a_shadow_run_land_on_the_server(wb_app, auth, strict_fhir):
    target, run = strict_fhir.rstrip("/"), uuid.uuid4().hex[:8]
    reasons = {
        name: f"{text} ({run})"
        for name, text in {
            "shadow": "Silent validation of 1.1.0",
            "propose": "Shadow agreement 96% over 400 calls",
            "withdraw": "Wait for the renal subgroup figures",
            "propose again": "Renal subgroup figures in: no gap",
            "approve": "Reviewed the shadow comparison; agree",
            "rollback": "Cluster of wrong renal doses after go-live",
        }.items()
    }
    client = wb_app.test_client()

    change(wb_app, "shadow", version="1.1.0", reason=reasons["shadow"], writeback_target=target)
    patient_id = sign_order(client, auth, strict_fhir)
    wb_app.extensions["cds_hooks"].backend.shadow.drain()
    candidate = registry(wb_app).card(MODEL, "1.1.0")
    first = act(wb_app, target, propose, candidate, governor=CMIO, reason=reasons["propose"])
    act(wb_app, target, withdraw, first.id, governor=SAFETY_OFFICER, reason=reasons["withdraw"])
    second = act(wb_app, target, propose, candidate, governor=CMIO, reason=reasons["propose again"])
    act(wb_app, target, approve, second.id, governor=SAFETY_OFFICER, reason=reasons["approve"])
    after_approval = sign_order(client, auth, strict_fhir)
    act(wb_app, target, rollback, MODEL, governor=CMIO, reason=reasons["rollback"])
    worker = wb_app.extensions[WORKER_KEY]
    for _ in range(50):
        if worker.run_once() == 0:
            break
    assert statuses(wb_app) == {DELIVERED: 13}  # 2 card sets, 1 shadow run, 5 acts, 5 changes
    assert statuses(wb_app, MODEL_PROMOTION) == {DELIVERED: 5}
    assert statuses(wb_app, SHADOW_CARD_SET) == {DELIVERED: 1}

    old, new = device(strict_fhir, "1.0.0"), device(strict_fhir, "1.1.0")
    keys = key_set(wb_app)
    expected = {  # act: (code, governor, [entities])
        "propose": ("model-promotion-proposed", CMIO, [new, old]),
        "withdraw": ("model-promotion-withdrawn", SAFETY_OFFICER, [new, old]),
        "propose again": ("model-promotion-proposed", CMIO, [new, old]),
        "approve": ("model-promotion-approved", SAFETY_OFFICER, [new, old]),
        "rollback": ("model-version-rolled-back", CMIO, [new, old]),
    }
    for name, (code, governor, entities) in expected.items():
        reason = reasons[name]
        event = change_control_events(strict_fhir, new, reason)[code]
        (agent, service) = event["agent"]
        assert agent["who"] == {"reference": governor.reference} and agent["requestor"] is True
        assert (agent["name"], agent["role"]) == (governor.name, [{"text": governor.role}])
        assert service["who"]["reference"].startswith("Device/") and service["requestor"] is False
        assert [e["what"]["reference"] for e in event["entity"]] == entities
        assert event["outcomeDesc"].endswith(f". {reason}")
        assert event["entity"][0]["detail"][0] == {"type": "model-version", "valueString": f"{MODEL}-1.1.0"}
        assert change_control_events(strict_fhir, old, reason)[code]["id"] == event["id"]

        (provenance,) = search_all(strict_fhir, "Provenance", target=f"AuditEvent/{event['id']}")
        assert [t["reference"] for t in provenance["target"]] == [f"AuditEvent/{event['id']}", *entities]
        assert provenance["reason"][0]["text"] == reason
        assert provenance["reason"][0]["coding"][0]["code"] == "METAMGT"
        assert provenance["activity"]["coding"][0] == event["subtype"][1]
        (governed,) = provenance["agent"]
        assert governed["who"] == {"reference": governor.reference}
        part = "attester" if name == "approve" else "author"
        assert governed["type"]["coding"][0]["code"] == part
        assert verify(provenance, keys).status == "valid"

    proposals = [
        change_control_events(strict_fhir, new, reasons[name])["model-promotion-proposed"]
        for name in ("propose", "propose again")
    ]
    assert [p["entity"][0]["detail"][1]["valueString"] for p in proposals] == [str(first.id), str(second.id)]
    withdrawn = change_control_events(strict_fhir, new, reasons["withdraw"])["model-promotion-withdrawn"]
    assert withdrawn["entity"][0]["detail"][1] == {"type": "proposal", "valueString": str(first.id)}

    # the status changes each act made: their own E9 AuditEvents, with the acting governor
    status_changes = {
        ("shadow", new): "model-version-shadowed",
        ("approve", new): "model-version-activated",
        ("approve", old): "model-version-retired",
        ("rollback", new): "model-version-retired",
        ("rollback", old): "model-version-activated",
    }
    for (name, device_ref), code in status_changes.items():
        changed = change_control_events(strict_fhir, device_ref, reasons[name])[code]
        assert changed["entity"][0]["what"] == {"reference": device_ref}
        governor = SAFETY_OFFICER if name == "approve" else CMIO
        assert changed["agent"][0]["who"] == {"reference": governor.reference}
        assert changed["agent"][0]["name"] == governor.name

    # the shadow run: one AuditEvent of subtype shadow, by 1.1.0, and nothing that says it was shown
    (shadow_set,) = card_sets(wb_app, "shadow")
    assert shadow_set.model_version == "1.1.0"
    events = search_all(strict_fhir, "AuditEvent", patient=f"Patient/{patient_id}")
    shadow_events = [e for e in events if {"system": GOVERNANCE, "code": "shadow"} in _codes(e["subtype"])]
    (shadow,) = shadow_events
    assert _codes(shadow["subtype"]) == [
        {"system": GOVERNANCE, "code": "cds-hooks-service-call"},
        {"system": GOVERNANCE, "code": "shadow"},
    ]
    assert [a["who"]["reference"] for a in shadow["agent"]][1] == new
    assert not any(a["type"]["coding"][0]["code"] == "IRCP" for a in shadow["agent"])
    query, output = shadow["entity"][1], shadow["entity"][2]
    assert query["detail"] == [{"type": "hookInstance", "valueString": shadow_set.hook_instance}]
    assert output["what"]["identifier"]["value"] == f"urn:uuid:{shadow_set.uuid}"
    assert output["detail"] == [
        {"type": "cards-not-shown", "valueString": str(issued_cards(wb_app, shadow_set))},
        {"type": "model-version", "valueString": f"{MODEL}-1.1.0"},
    ]
    assert _tags(shadow) == {f"{shadow_set.uuid}.shadow-audit-event"}
    assert len(search_all(strict_fhir, "GuidanceResponse", subject=f"Patient/{patient_id}")) == 1
    assert len(search_all(strict_fhir, "RequestGroup", subject=f"Patient/{patient_id}")) == 1
    assert len(search_all(strict_fhir, "Provenance", entity=f"Patient/{patient_id}")) == 1

    # each issued card set names the version that answered: 1.0.0 before the approval, 1.1.0 after
    for patient_ref, version, device_ref in (
        (f"Patient/{patient_id}", "1.0.0", old),
        (f"Patient/{after_approval}", "1.1.0", new),
    ):
        (guidance,) = search_all(strict_fhir, "GuidanceResponse", subject=patient_ref)
        assert guidance["performer"] == {"reference": device_ref}
        (ai_output,) = search_all(strict_fhir, "Provenance", entity=patient_ref)
        assert ai_output["agent"][0]["who"] == {"reference": device_ref}
        (call,) = [
            e
            for e in search_all(strict_fhir, "AuditEvent", patient=patient_ref)
            if _codes(e["subtype"]) == [{"system": GOVERNANCE, "code": "cds-hooks-service-call"}]
        ]
        assert [a["who"].get("reference") for a in call["agent"]][2] == device_ref
        assert {"type": "model-version", "valueString": f"{MODEL}-{version}"} in call["entity"][2]["detail"]
    assert [s.model_version for s in card_sets(wb_app, "issued")] == ["1.0.0", "1.1.0"]


def test_an_unknown_kind_or_a_shadow_card_set_as_shown_is_a_permanent_failure(wb_app, auth, strict_fhir):
    change(wb_app, "shadow", version="1.1.0", reason="Silent validation of 1.1.0")
    sign_order(wb_app.test_client(), auth, strict_fhir)
    wb_app.extensions["cds_hooks"].backend.shadow.drain()
    (shadow_set,) = card_sets(wb_app, "shadow")
    (issued,) = card_sets(wb_app, "issued")
    worker = wb_app.extensions[WORKER_KEY]
    writer = worker.writers[strict_fhir.rstrip("/")]
    for kind, record in (("model-retrain", 1), (CARD_SET, shadow_set.id), (SHADOW_CARD_SET, issued.id)):
        with pytest.raises(DeliveryError) as refused:
            worker.deliverer.build(kind, record, writer)
        assert refused.value.permanent, kind


def _codes(codings: list[dict]) -> list[dict]:
    return [{"system": c["system"], "code": c["code"]} for c in codings]


def _tags(resource: dict) -> set[str]:
    return {t["code"] for t in resource["meta"].get("tag", []) if t["system"] == DELIVERY_TAG_SYSTEM}


def test_a_proposal_with_no_active_version_to_replace_names_one_device():
    facts = PromotionFacts(
        act="propose",
        model_name="Countersign Medication Safety",
        model_id=MODEL,
        model_version="1.1.0",
        device_ref="Device/new",
        service_ref="Device/governance",
        governor=CMIO.reference,
        role=CMIO.role,
        reason="First version of the model",
        at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        proposal=7,
    )
    event = promotion_audit_event(facts)
    assert event["outcomeDesc"] == (
        "Countersign Medication Safety 1.1.0 proposed for active, to replace no active version. "
        "First version of the model"
    )
    (entity,) = event["entity"]
    assert entity["what"] == {"reference": "Device/new"} and "name" not in event["agent"][0]
    provenance = promotion_provenance(facts, "urn:uuid:audit")
    assert provenance["target"] == [{"reference": "urn:uuid:audit"}, {"reference": "Device/new"}]
