"""The audit trail a CMIO reads: each ledger kind as a sentence, and the filters by model and
version, over entries written by the real hook, feedback and change-control paths."""

from __future__ import annotations

import re
from html import unescape

import pytest
from playwright.sync_api import expect, sync_playwright

from app import DATABASE_KEY
from app.audit import ledger
from app.audit.sentences import SENTENCES, describe
from app.audit.trail import PAGE_SIZE, EntryModel, TrailFilter, entries, filter_choices, model_of
from app.governance.change_control import Governor, record_change
from app.governance.model_card import MODEL_CARDS_KEY
from tests.builders import PATIENT_ID, USER_ID, medication_request, moment, order_sign_request
from tests.smart_helpers import CALLBACK, mock_ehr, smart_settings, standalone_launch
from tests.test_browser_journey import CHROMIUM, CHROMIUM_ARGS

SERVICE = "/cds-services/medication-safety"
CARD = "7b0c3e0a-51c6-4a07-9d8e-111111111111"
CMIO = {"by": "Practitioner/cmio-1", "by_name": "Dr Ama Osei", "role": "cmio"}


def change(action: str, previous: str, status: str, version: str = "1.0.0", **extra: object) -> dict:
    return {
        "model_id": "medication-safety",
        "model_version": version,
        "action": action,
        "previous_status": previous,
        "status": status,
        "approver": "Practitioner/cmio-1",
        "approver_name": "Dr Ama Osei",
        "role": "cmio",
        "reason": "Renal dosing under review",
        "changed_at": "2025-03-01T14:05:09+00:00",
    } | extra


def act(name: str, proposal: int | None, version: str, from_version: str | None, **who: object) -> dict:
    return {
        "act": name,
        "proposal": proposal,
        "model_id": "medication-safety",
        "model_version": version,
        "from_version": from_version,
        "reason": "Validated in shadow for 30 days",
        "at": "2025-03-01T14:05:09+00:00",
    } | (who or CMIO)


def card_set(disposition: str, cards: list[dict], guardrails: list[dict] | None = None) -> dict:
    return {
        "hookInstance": "d1b0e3e4-0000-4000-8000-000000000001",
        "service": "medication-safety",
        "model": "medication-safety@1.1.0" if disposition == "shadow" else "medication-safety@1.0.0",
        "disposition": disposition,
        "guardrails": guardrails or [],
        "patient": "pat-renal-001",
        "user": "Practitioner/prac-001",
        "inputs": ["Observation/egfr-1"],
        "cards": cards,
    }


def card(rule: str, uuid: str = CARD) -> dict:
    return {"uuid": uuid, "indicator": "warning", "confidence": 0.9, "rule": rule, "suggestions": []}


SENTENCE_CASES = [
    (
        "model-status-changed",
        change("pause", "active", "paused"),
        None,
        "Dr Ama Osei (cmio) paused medication-safety 1.0.0 (active → paused): "
        "reason “Renal dosing under review”",
    ),
    (
        "model-status-changed",
        change("resume", "paused", "active", approver_name=None),
        None,
        "Practitioner/cmio-1 (cmio) resumed medication-safety 1.0.0 (paused → active): "
        "reason “Renal dosing under review”",
    ),
    (
        "model-status-changed",
        {k: v for k, v in change("shadow", "active", "shadow").items() if k != "approver_name"},
        None,
        "Practitioner/cmio-1 (cmio) put medication-safety 1.0.0 in shadow (active → shadow): "
        "reason “Renal dosing under review”",
    ),
    (
        "model-status-changed",
        change("retire", "paused", "retired"),
        None,
        "Dr Ama Osei (cmio) retired medication-safety 1.0.0 (paused → retired): "
        "reason “Renal dosing under review”",
    ),
    (
        "model-status-changed",
        change("promote", "shadow", "active", "1.1.0", approver_name="Dr Sam Rivera", role="safety-officer"),
        None,
        "medication-safety 1.1.0 became active (shadow → active), promotion approved by "
        "Dr Sam Rivera (safety-officer): reason “Renal dosing under review”",
    ),
    (
        "model-status-changed",
        change("supersede", "active", "retired", approver_name="Dr Sam Rivera", role="safety-officer"),
        None,
        "medication-safety 1.0.0 superseded (active → retired), promotion approved by "
        "Dr Sam Rivera (safety-officer): reason “Renal dosing under review”",
    ),
    (
        "model-status-changed",
        change("roll-back", "active", "retired", "1.1.0"),
        None,
        "medication-safety 1.1.0 rolled back (active → retired) by Dr Ama Osei (cmio): "
        "reason “Renal dosing under review”",
    ),
    (
        "model-status-changed",
        change("restore", "retired", "active"),
        None,
        "medication-safety 1.0.0 restored (retired → active) by Dr Ama Osei (cmio): "
        "reason “Renal dosing under review”",
    ),
    (
        "model-promotion-proposed",
        act("propose", None, "1.1.0", "1.0.0"),
        None,
        "Dr Ama Osei (cmio) proposed medication-safety 1.1.0 for active (replacing 1.0.0): "
        "reason “Validated in shadow for 30 days”",
    ),
    (
        "model-promotion-proposed",
        act("propose", None, "1.0.0", None, by="Practitioner/cmio-1", by_name=None, role="cmio"),
        None,
        "Practitioner/cmio-1 (cmio) proposed medication-safety 1.0.0 for active "
        "(no version active to replace): reason “Validated in shadow for 30 days”",
    ),
    (
        "model-promotion-approved",
        act(
            "approve",
            4,
            "1.1.0",
            "1.0.0",
            by="PractitionerRole/so-1",
            by_name="Dr Sam Rivera",
            role="safety-officer",
        ),
        None,
        "Dr Sam Rivera (safety-officer) approved proposal #4 to promote medication-safety 1.1.0 "
        "(replacing 1.0.0): reason “Validated in shadow for 30 days”",
    ),
    (
        "model-promotion-withdrawn",
        act("withdraw", 4, "1.1.0", "1.0.0"),
        None,
        "Dr Ama Osei (cmio) withdrew proposal #4 to promote medication-safety 1.1.0: "
        "reason “Validated in shadow for 30 days”",
    ),
    (
        "model-rolled-back",
        act("rollback", None, "1.1.0", "1.0.0"),
        None,
        "Dr Ama Osei (cmio) rolled medication-safety back from 1.1.0 to 1.0.0: "
        "reason “Validated in shadow for 30 days”",
    ),
    (
        "card-set-issued",
        card_set("issued", [card("renal-dose-limit"), card("interaction", "c2")]),
        "medication-safety 1.0.0",
        "medication-safety 1.0.0 issued 2 cards (renal-dose-limit, interaction) to Practitioner/prac-001 "
        "for Patient/pat-renal-001",
    ),
    (
        "card-set-issued",
        card_set("issued", [], [{"guardrail": "recently-overridden", "rule": "renal-dose-limit"}]),
        "medication-safety 1.0.0",
        "medication-safety 1.0.0 answered Practitioner/prac-001 for Patient/pat-renal-001 with no card; "
        "guardrails: recently-overridden (renal-dose-limit)",
    ),
    (
        "card-set-issued",
        card_set(
            "issued", [card("renal-dose-limit"), card("renal-dose-limit", "c2"), card("interaction", "c3")]
        ),
        "medication-safety 1.0.0",
        "medication-safety 1.0.0 issued 3 cards (renal-dose-limit x2, interaction) to Practitioner/prac-001 "
        "for Patient/pat-renal-001",
    ),
    (
        "card-set-shadow",
        card_set("shadow", [card("renal-dose-limit")]),
        "medication-safety 1.1.0",
        "medication-safety 1.1.0 ran in shadow for Patient/pat-renal-001: "
        "1 card recorded (renal-dose-limit), not shown",
    ),
    (
        "invocation-suppressed",
        card_set("paused", []),
        "medication-safety 1.0.0",
        "medication-safety 1.0.0 gave no card to Practitioner/prac-001 for Patient/pat-renal-001: "
        "the model is paused",
    ),
    (
        "invocation-suppressed",
        card_set(
            "not-applicable",
            [],
            [{"guardrail": "applicability", "detail": "hook patient-view is not in the intended use"}],
        ),
        "medication-safety 1.0.0",
        "medication-safety 1.0.0 gave no card to Practitioner/prac-001 for Patient/pat-renal-001: "
        "outside its intended use (hook patient-view is not in the intended use)",
    ),
    (
        "decision-recorded",
        {"card": CARD, "outcome": "accepted", "acceptedSuggestions": ["s1"], "overrideReason": None},
        "medication-safety 1.0.0",
        f"Clinician accepted card {CARD} of medication-safety 1.0.0 (1 suggestion taken)",
    ),
    (
        "decision-recorded",
        {
            "card": CARD,
            "outcome": "overridden",
            "acceptedSuggestions": [],
            "overrideReason": "patient-declined",
        },
        None,
        f"Clinician overrode card {CARD}: reason patient-declined",
    ),
    (
        "review-signed",
        {
            "card": CARD,
            "reviewer": "Practitioner/clin-1",
            "outcome": "accepted",
            "decision": 3,
            "edited": True,
        },
        "discharge-summary-draft 1.0.0",
        f"Practitioner/clin-1 signed the draft on card {CARD} of discharge-summary-draft 1.0.0 "
        "(edited before signing)",
    ),
    (
        "review-rejected",
        {
            "card": CARD,
            "reviewer": "Practitioner/clin-1",
            "outcome": "overridden",
            "decision": 3,
            "edited": None,
        },
        None,
        f"Practitioner/clin-1 rejected the draft on card {CARD}; nothing was written to the EHR",
    ),
    (
        "safety-event-reported",
        {
            "safety_event": 2,
            "card": CARD,
            "model": "medication-safety-1.0.0",
            "patient": "Patient/pat-renal-001",
            "category": "wrong-dose",
            "severity": "severe",
            "reporter": "PractitionerRole/so-1",
            "occurred_at": "2025-03-01T10:00:00+00:00",
            "detected_at": "2025-03-01T11:00:00+00:00",
        },
        "medication-safety 1.0.0",
        f"PractitionerRole/so-1 reported safety event #2, severe wrong-dose, on card {CARD} of "
        "medication-safety 1.0.0 for Patient/pat-renal-001 (occurred 2025-03-01 10:00:00 UTC)",
    ),
    (
        "sign-in",
        {
            "ehr": "https://ehr.example/fhir",
            "fhir_user": "Practitioner/cmio-1",
            "role": "cmio",
            "session": "ab12",
        },
        None,
        "Practitioner/cmio-1 (cmio) signed in through https://ehr.example/fhir",
    ),
    (
        "sign-in-refused",
        {"action": "login", "refused": True, "reason": "state-mismatch", "ehr": None},
        None,
        "Sign-in refused (no sign-in in flight matched): state-mismatch",
    ),
    (
        "sign-out",
        {"ehr": "https://ehr.example/fhir", "fhir_user": "Practitioner/aud-1", "role": "auditor"},
        None,
        "Practitioner/aud-1 (auditor) signed out",
    ),
    (
        "session-ended",
        {"ehr": "https://ehr.example/fhir", "fhir_user": None, "role": None, "reason": "expired"},
        None,
        "Session of an unmapped user ended: expired",
    ),
    (
        "outbox-retried",
        {"messages": [4, 9], "operator": "ops"},
        None,
        "ops put 2 dead letters back in the outbox (#4, #9)",
    ),
]


@pytest.mark.parametrize(("kind", "content", "model", "expected"), SENTENCE_CASES)
def test_each_kind_reads_as_a_sentence(kind, content, model, expected):
    assert describe(kind, content, model) == expected


def test_every_kind_with_a_sentence_is_exercised():
    assert {kind for kind, *_ in SENTENCE_CASES} == set(SENTENCES)


def test_an_unknown_kind_or_an_unreadable_entry_falls_back():
    assert describe("model-card-published", {"x": 1}) == "model-card-published recorded"
    assert describe("model-card-published", {}, "readmission-risk 1.0.0") == (
        "model-card-published recorded (readmission-risk 1.0.0)"
    )
    assert describe("model-status-changed", {"action": "pause"}) == "model-status-changed recorded"


def test_the_model_of_an_entry_comes_from_its_content():
    assert model_of(change("pause", "active", "paused")) == EntryModel("medication-safety", ("1.0.0",))
    assert model_of(act("propose", None, "1.1.0", "1.0.0")) == EntryModel(
        "medication-safety", ("1.1.0", "1.0.0")
    )
    assert model_of(card_set("issued", [])) == EntryModel("medication-safety", ("1.0.0",))
    assert model_of({"model": "discharge-summary-draft-1.0.0"}) == EntryModel(
        "discharge-summary-draft", ("1.0.0",)
    )
    assert model_of({"service": "readmission-risk"}) == EntryModel("readmission-risk")
    assert model_of({"card": CARD, "outcome": "accepted"}) is None


class Card:
    def __init__(self, model_id: str, version: str) -> None:
        self.id, self.version = model_id, version


def test_filter_choices_take_a_registry_of_cards_or_a_mapping_of_ids():
    registry = [
        Card("medication-safety", "1.1.0"),
        Card("medication-safety", "1.0.0"),
        Card("readmission-risk", "1.0.0"),
    ]
    assert filter_choices(registry, TrailFilter()) == (
        ["medication-safety", "readmission-risk"],
        ["1.0.0", "1.1.0"],
    )
    assert filter_choices(registry, TrailFilter(model="readmission-risk")) == (
        ["medication-safety", "readmission-risk"],
        ["1.0.0"],
    )
    mapping = {"medication-safety": Card("medication-safety", "1.0.0")}
    assert filter_choices(mapping, TrailFilter(version="0.9.10")) == (
        ["medication-safety"],
        ["0.9.10", "1.0.0"],
    )
    assert filter_choices(mapping, TrailFilter(model="retired-model", version="0.9.10")) == (
        ["medication-safety", "retired-model"],
        ["0.9.10"],
    )
    assert filter_choices(["medication-safety"], TrailFilter()) == (["medication-safety"], [])


# The filters, over entries the real code paths write ---------------------------------------------


@pytest.fixture
def database_url(both_databases: str) -> str:
    """The filters narrow with LIKE on SQLite and on PostgreSQL (case-blind on one, not the other)."""
    return both_databases


@pytest.fixture
def seeded(app, client, auth) -> dict:
    """Two card sets and a decision from medication-safety 1.0.0 (real hook call and feedback), a
    pause of 1.1.0 and a promotion act naming both versions (change control), and a sign-in."""
    issued = []
    for draft in ("d1", "d2"):
        body = order_sign_request([medication_request(draft)])
        issued += client.post(SERVICE, json=body, headers=auth(SERVICE)).get_json()["cards"]
    feedback = {
        "feedback": [{"card": issued[0]["uuid"], "outcome": "overridden", "outcomeTimestamp": moment()}]
    }
    assert (
        client.post(SERVICE + "/feedback", json=feedback, headers=auth(SERVICE + "/feedback")).status_code
        == 200
    )
    engine = app.extensions[DATABASE_KEY]
    newer = app.extensions[MODEL_CARDS_KEY].card("medication-safety", "1.1.0")
    governor = Governor("Practitioner/cmio-1", "cmio", "Dr Ama Osei")
    with engine.begin() as connection:
        record_change(connection, newer, "shadow", "paused", "shadow", governor, "Shadow first", None)
        ledger.append(connection, "model-promotion-proposed", act("propose", None, "1.1.0", "1.0.0"))
        ledger.append(
            connection, "sign-in", {"fhir_user": "Practitioner/aud-1", "role": "auditor", "ehr": None}
        )
        ledger.append(
            connection,
            "model-status-changed",
            change("pause", "active", "paused") | {"model_id": "medication"},
        )
    return {"cards": [c["uuid"] for c in issued], "engine": engine}


def trail(seeded, **chosen) -> list:
    with seeded["engine"].connect() as connection:
        return entries(connection, TrailFilter(**chosen))


def test_filter_by_model_keeps_its_card_sets_decisions_and_governance(seeded):
    rows = trail(seeded, model="medication-safety")
    assert [row.entry.kind for row in rows] == [
        "model-promotion-proposed",
        "model-status-changed",
        "decision-recorded",
        "card-set-issued",
        "card-set-issued",
    ]
    decision = rows[2]
    assert decision.model == EntryModel("medication-safety", ("1.0.0",))
    assert decision.sentence == (
        f"Clinician overrode card {seeded['cards'][0]} of medication-safety 1.0.0, no reason given"
    )
    assert rows[-1].sentence == (
        f"medication-safety 1.0.0 issued 1 card (metformin-egfr-below-30) to {USER_ID} "
        f"for Patient/{PATIENT_ID}"
    )
    assert rows[1].sentence == (
        "Dr Ama Osei (cmio) put medication-safety 1.1.0 in shadow (paused → shadow): reason “Shadow first”"
    )


def test_filter_by_version_keeps_entries_naming_that_version(seeded):
    newer = [row.entry.kind for row in trail(seeded, model="medication-safety", version="1.1.0")]
    assert newer == ["model-promotion-proposed", "model-status-changed"]
    older = [row.entry.kind for row in trail(seeded, version="1.0.0")]
    assert older == [
        "model-status-changed",  # the lookalike "medication" model, version 1.0.0
        "model-promotion-proposed",  # replaces 1.0.0
        "decision-recorded",
        "card-set-issued",
        "card-set-issued",
    ]
    assert trail(seeded, model="medication", version="1.1.0") == []
    assert [row.entry.kind for row in trail(seeded, model="medication")] == ["model-status-changed"]


def test_filters_combine_with_kind_and_unfiltered_pages_keep_every_entry(seeded):
    assert [row.entry.kind for row in trail(seeded, model="medication-safety", kind="decision-recorded")] == [
        "decision-recorded"
    ]
    everything = trail(seeded)
    assert len(everything) == 7 and everything[0].sentence.startswith(
        "Dr Ama Osei (cmio) paused medication 1.0.0"
    )
    assert trail(seeded, model="readmission-risk") == []


def test_a_model_page_reads_past_entries_of_other_models(seeded):
    """The SQL narrows by the content, Python decides; a full page of lookalikes does not hide
    older matches."""
    with seeded["engine"].begin() as connection:
        for _ in range(PAGE_SIZE + 5):
            ledger.append(
                connection,
                "model-status-changed",
                change("pause", "active", "paused") | {"model_id": "medication"},
            )
    rows = trail(seeded, model="medication-safety", version="1.0.0")
    assert [row.entry.kind for row in rows] == [
        "model-promotion-proposed",
        "decision-recorded",
        "card-set-issued",
        "card-set-issued",
    ]


# The page -----------------------------------------------------------------------------------------


@pytest.fixture
def ehr(fhir_server):
    with mock_ehr(fhir_server, CALLBACK) as running:
        yield running


@pytest.fixture
def reader(make_app, ehr, auth) -> tuple:
    """An auditor signed in to an app that issued one card and whose CMIO paused a model."""
    smart_app = make_app(**smart_settings(ehr))
    body = order_sign_request([medication_request("d1")])
    [issued] = smart_app.test_client().post(SERVICE, json=body, headers=auth(SERVICE)).get_json()["cards"]
    newer = smart_app.extensions[MODEL_CARDS_KEY].card("medication-safety", "1.1.0")
    governor = Governor("Practitioner/cmio-1", "cmio", "Dr Ama Osei")
    with smart_app.extensions[DATABASE_KEY].begin() as connection:
        record_change(connection, newer, "retire", "paused", "retired", governor, REASON, None)
    client = smart_app.test_client()
    assert standalone_launch(client, "aud-1").status_code == 303
    return client, issued["uuid"]


REASON = "Renal dosing cards under review (3f9a)"


def test_the_audit_page_shows_sentences_raw_entries_and_model_filters(reader):
    client, card_uuid = reader
    page = unescape(client.get("/app/audit?model=medication-safety&version=1.0.0").get_data(as_text=True))
    assert re.search(r'<select name="model">.*<option value="medication-safety" selected>', page, re.S)
    assert re.search(
        r'<select name="version">.*<option value="1.0.0" selected>.*<option value="1.1.0"', page, re.S
    )
    [row] = re.findall(r"<tr>\s*<th scope=\"row\">.*?</tr>", page, re.S)
    sentence = re.search(
        r'<summary><span class="sentence">(.*?)</span> <span class="raw-toggle">Raw entry', row
    )
    issued = f"issued 1 card (metformin-egfr-below-30) to {USER_ID} for Patient/{PATIENT_ID}"
    assert sentence[1] == f"medication-safety 1.0.0 {issued}"
    assert f'"patient":"{PATIENT_ID}"' in row and card_uuid in row

    everything = unescape(client.get("/app/audit").get_data(as_text=True))
    assert "Practitioner/aud-1 (auditor) signed in through" in everything
    assert (
        f"Dr Ama Osei (cmio) retired medication-safety 1.1.0 (paused → retired): reason “{REASON}”"
        in everything
    )
    assert "No entries match." in client.get("/app/audit?model=readmission-risk").get_data(as_text=True)


@pytest.mark.browser
def test_in_a_browser_the_reason_is_one_visible_element_and_the_raw_entry_is_in_its_row(reader):
    """The raw entry stays in its row's text (a test may find a card's row by its uuid and read the
    entry), and the reason a sentence quotes is one visible element, not two."""
    client, card_uuid = reader
    html = client.get("/app/audit").get_data(as_text=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_content(html)
        record = page.locator("table.trail tbody tr", has_text=card_uuid)
        expect(record).to_have_count(1)
        expect(record).to_contain_text(f'"patient":"{PATIENT_ID}"')
        expect(record.locator("details")).not_to_have_attribute("open", "")
        expect(page.get_by_text(REASON)).to_be_visible()
        expect(record).not_to_contain_text('"patient":', use_inner_text=True)  # rendered: the sentence
        record.locator("summary").click()
        expect(record).to_contain_text(f'"patient":"{PATIENT_ID}"', use_inner_text=True)
        browser.close()
