"""Safety monitoring: events reported against cards, and dashboard figures checked against raw records."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import text

from app import DATABASE_KEY, WORKER_KEY
from app.db import utcnow
from app.safety.dashboard import safety_summary
from app.safety.events import ReportRefused, report_safety_event
from tests.builders import full_prefetch, medication_request, moment, order_sign_request, patient
from tests.writeback_helpers import FEEDBACK, NON_ADHERENCE, SERVICE, drain, put, search, writeback_settings

MODEL = "medication-safety-1.0.0"


def issue_card(client, auth, patient_id: str) -> dict:
    body = order_sign_request(
        [medication_request(f"met-{patient_id}", patient_id=patient_id)],
        full_prefetch(egfr_value=25, patient_id=patient_id),
        patient_id=patient_id,
    )
    (card,) = client.post(SERVICE, json=body, headers=auth(SERVICE)).get_json()["cards"]
    return card


def decide(client, auth, card: dict, outcome: str, reason: str = "patient-contraindication") -> None:
    item: dict = {"card": card["uuid"], "outcome": outcome, "outcomeTimestamp": moment()}
    if outcome == "accepted":
        item["acceptedSuggestions"] = [{"id": card["suggestions"][0]["uuid"]}]
    else:
        item["overrideReason"] = {"reason": {"system": NON_ADHERENCE, "code": reason}}
    assert client.post(FEEDBACK, json={"feedback": [item]}, headers=auth(FEEDBACK)).status_code == 200


def report(app, **overrides):
    values = {
        "category": "product-problem",
        "severity": "moderate",
        "description": "Dose reduced on the card's advice; hypoglycaemia followed.",
        "reporter": "Practitioner/rn-7",
        "occurred_at": utcnow(),
        "writeback_target": app.config["COUNTERSIGN"].writeback_target,
    }
    return report_safety_event(app.extensions[DATABASE_KEY], **(values | overrides))


def raw(app, sql: str) -> list:
    with app.extensions[DATABASE_KEY].connect() as connection:
        return connection.execute(text(sql)).all()


def test_dashboard_figures_match_an_independent_count_from_the_raw_records(app, client, auth):
    cards = [issue_card(client, auth, f"p{n}") for n in range(6)]
    issue_card(client, auth, "p0")  # the same patient the same day: still one encounter
    decide(client, auth, cards[0], "accepted")
    decide(client, auth, cards[1], "accepted")
    decide(client, auth, cards[2], "overridden", "patient-contraindication")
    decide(client, auth, cards[3], "overridden", "risk-benefit-ratio")
    decide(client, auth, cards[4], "overridden", "risk-benefit-ratio")
    report(app, card_uuid=cards[0]["uuid"])

    with app.extensions[DATABASE_KEY].connect() as connection:
        (figures,) = safety_summary(connection, utcnow())

    shown = raw(app, "SELECT COUNT(*) FROM issued_card")[0][0]
    outcomes = dict(raw(app, "SELECT outcome, COUNT(*) FROM card_decision GROUP BY outcome"))
    encounters = raw(app, "SELECT COUNT(DISTINCT patient_id) FROM card_set WHERE disposition = 'issued'")[0][
        0
    ]
    events = raw(app, "SELECT COUNT(*) FROM safety_event")[0][0]
    assert figures.model == MODEL
    assert (figures.shown, figures.accepted, figures.overridden) == (
        shown,
        outcomes["accepted"],
        outcomes["overridden"],
    )
    assert (shown, figures.ai_assisted_encounters, events) == (7, 6, 1)
    assert figures.safety_events_per_1000_encounters == round(1000 * events / encounters, 2)
    assert sum(figures.override_reasons.values()) == outcomes["overridden"]
    assert figures.weeks[-1].acceptance_rate == round(2 / 5, 4)
    assert 0 <= figures.time_to_detect_hours["median"] < 0.1


def test_acceptance_drift_is_flagged_when_the_recent_window_differs(app, client, auth):
    cards = [issue_card(client, auth, f"d{n}") for n in range(70)]
    for card in cards[:35]:
        decide(client, auth, card, "accepted")
    for card in cards[35:]:
        decide(client, auth, card, "overridden")
    old = "', '".join(card["uuid"] for card in cards[:35])
    with app.extensions[DATABASE_KEY].begin() as connection:
        connection.execute(
            text(
                "UPDATE card_set SET created_at = :then WHERE id IN "
                f"(SELECT card_set_id FROM issued_card WHERE uuid IN ('{old}'))"
            ),
            {"then": utcnow() - timedelta(days=20)},
        )
        (figures,) = safety_summary(connection, utcnow())
    acceptance, confidence = figures.drift
    assert (acceptance.baseline_n, acceptance.recent_n) == (35, 35)
    assert acceptance.flagged and acceptance.statistic < -3
    assert not confidence.flagged  # same rule, same confidence: no shift


def test_too_few_decisions_say_so_instead_of_flagging(app, client, auth):
    decide(client, auth, issue_card(client, auth, "few"), "overridden")
    with app.extensions[DATABASE_KEY].connect() as connection:
        (figures,) = safety_summary(connection, utcnow())
    assert [(d.flagged, d.note) for d in figures.drift] == [(False, "insufficient data")] * 2


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"card_uuid": "no-such-card"}, "card"),
        ({"severity": "catastrophic"}, "severity"),
        ({"reporter": "Patient/p1"}, "reporter"),
        ({"occurred_at": utcnow() - timedelta(days=1)}, "occurred"),
        ({"description": "  "}, "description"),
    ],
)
def test_a_bad_report_is_refused_naming_the_field_and_nothing_is_stored(app, client, auth, overrides, field):
    card = issue_card(client, auth, "bad")
    with pytest.raises(ReportRefused) as refused:
        report(app, **({"card_uuid": card["uuid"]} | overrides))
    assert refused.value.field == field
    assert "hypoglycaemia" not in str(refused.value)
    assert raw(app, "SELECT COUNT(*) FROM safety_event")[0][0] == 0
    assert raw(app, "SELECT COUNT(*) FROM ledger_entry WHERE kind = 'safety-event-reported'")[0][0] == 0


@pytest.mark.integration
def test_a_safety_event_is_written_back_as_an_adverse_event_naming_the_ai_device(make_app, auth, fhir_server):
    app = make_app(**writeback_settings(fhir_server))
    client = app.test_client()
    patient_id = f"se{utcnow().strftime('%H%M%S%f')}"
    put(fhir_server, patient(patient_id))
    body = order_sign_request(
        [medication_request(f"met-{patient_id}", patient_id=patient_id)],
        full_prefetch(egfr_value=25, patient_id=patient_id),
        patient_id=patient_id,
        fhirServer=fhir_server,
    )
    (card,) = client.post(SERVICE, json=body, headers=auth(SERVICE)).get_json()["cards"]
    report(app, card_uuid=card["uuid"], severity="severe")
    drain(app.extensions[WORKER_KEY])
    (event,) = search(fhir_server, "AdverseEvent", subject=f"Patient/{patient_id}")
    assert event["severity"]["coding"][0]["code"] == "severe"
    device = event["suspectEntity"][0]["instance"]["reference"]
    assert device.startswith("Device/")
    assert raw(app, "SELECT status FROM outbox_message WHERE kind = 'safety-event'") == [("delivered",)]
