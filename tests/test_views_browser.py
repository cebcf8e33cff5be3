"""Real browser (Debian Chromium): the safety dashboard, patient AI activity and review page inside
the EHR's cross-site iframe at sidebar width, driven by keyboard where a user would. Screenshots go
to ``test-output/browser/``; the wide dashboard also to ``docs/screenshots/cmio-dashboard.png``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select, update

from app import DATABASE_KEY, WORKER_KEY
from app.audit.tables import CardSet
from app.db import as_utc, utcnow
from sandbox.mock_ehr_auth import BackgroundServer
from tests.smart_helpers import free_port, mock_ehr, smart_settings
from tests.test_smart_browser import browser, shot  # noqa: F401  (the module's Chromium fixture)
from tests.views_helpers import discharge_card
from tests.writeback_helpers import (
    accept_and_apply,
    drain,
    order_sign_session,
    override,
    search,
    writeback_settings,
)

pytestmark = pytest.mark.browser
DOCS_SHOT = Path(__file__).resolve().parent.parent / "docs" / "screenshots" / "cmio-dashboard.png"


@pytest.fixture
def stack(make_app, fhir_server: str, sign) -> Iterator[dict]:
    """App on localhost, EHR on 127.0.0.1, with five weeks of decided cards and a held draft."""
    port = free_port()
    app_url = f"http://localhost:{port}"
    with mock_ehr(fhir_server, f"{app_url}/app/callback") as ehr:
        app = make_app(
            public_base_url=app_url,
            **smart_settings(ehr),
            **writeback_settings(fhir_server),
            writeback_default_server=fhir_server,
        )

        def auth(path: str) -> dict:
            return {"Authorization": f"Bearer {sign(app_url + path)}"}

        seeded = _seed(app, auth, fhir_server)
        with BackgroundServer(app, "127.0.0.1", port):
            yield {"app_url": app_url, "ehr": ehr, "fhir": fhir_server} | seeded


def _seed(app, auth, fhir_server: str) -> dict:
    hooks = app.test_client()
    first = None
    for weeks_ago in range(5, 0, -1):
        before = _last_card_set(app)
        for _ in range(2 + weeks_ago % 2):
            patient, metformin, warfarin = order_sign_session(hooks, auth, fhir_server)
            _decide(hooks, auth, fhir_server, weeks_ago % 3, metformin, warfarin)
            first = first or (patient, warfarin["uuid"])
        _age_card_sets(app, before, timedelta(weeks=weeks_ago))
    drain(app.extensions[WORKER_KEY])
    held_patient, held = discharge_card(hooks, auth, fhir_server)
    return {
        "app": app,
        "patient": first[0],
        "card": first[1],
        "held_patient": held_patient,
        "held": held["uuid"],
    }


def _decide(hooks, auth, fhir_server: str, pattern: int, metformin: dict, warfarin: dict) -> None:
    """Three weekly patterns, so the chart has something to show: half, all or none accepted."""
    if pattern == 2:
        override(hooks, auth, metformin, comment="Dose already reduced by the renal team")
    else:
        accept_and_apply(hooks, auth, fhir_server, metformin)
    if pattern != 1:
        override(hooks, auth, warfarin)


def _last_card_set(app) -> int:
    with app.extensions[DATABASE_KEY].connect() as connection:
        return connection.execute(select(func.coalesce(func.max(CardSet.id), 0))).scalar_one()


def _age_card_sets(app, after_id: int, age: timedelta) -> None:
    """History for the chart: the card sets just made are dated back (only their time changes)."""
    with app.extensions[DATABASE_KEY].begin() as connection:
        made = connection.execute(select(CardSet.id, CardSet.created_at).where(CardSet.id > after_id)).all()
        for row_id, created in made:
            connection.execute(
                update(CardSet).where(CardSet.id == row_id).values(created_at=as_utc(created) - age)
            )


def _ehr(page, stack: dict, user: str, patient: str, app_context: dict | None = None):
    query = {"app": f"{stack['app_url']}/app/launch", "user": user, "patient": patient, "width": "360px"}
    if app_context:
        query["appContext"] = json.dumps(app_context)
    page.goto(f"{stack['ehr'].state.public_url}/ehr?{urlencode(query)}")
    return page.frame_locator("#app")


def test_a_cmio_reads_the_dashboard_reports_an_event_and_sees_the_patients_ai_activity(browser, stack):  # noqa: F811
    page = browser.new_page(viewport={"width": 480, "height": 1000})
    frame = _ehr(page, stack, "cmio-1", stack["patient"])
    frame.get_by_role("link", name="Safety dashboard").click()
    expect(frame.get_by_role("heading", name="Safety dashboard")).to_be_visible()
    expect(
        frame.get_by_role("img", name="Acceptance and override rate per week, medication-safety-1.0.0")
    ).to_be_visible()
    shot(page, "ehr-iframe-safety-dashboard")

    frame.get_by_label("Card uuid").fill(stack["card"])
    frame.get_by_label("Severity").select_option("moderate")
    frame.get_by_label("When it happened (UTC)").fill("2030-01-01T00:00")
    frame.get_by_label("What happened").fill("Bleeding after NSAID started despite the warning")
    frame.get_by_label("What happened").press("Tab")
    page.keyboard.press("Enter")
    expect(frame.get_by_role("alert")).to_contain_text("occurred: a past date-time")
    frame.get_by_label("When it happened (UTC)").fill("2026-01-01T00:00")
    frame.get_by_role("button", name="Report safety event").click()
    expect(frame.get_by_role("alert")).to_contain_text("the event cannot precede the card")
    frame.get_by_label("When it happened (UTC)").fill(_now_local())
    frame.get_by_role("button", name="Report safety event").click()
    expect(frame.get_by_role("status")).to_contain_text("Recorded safety event #1")
    shot(page, "ehr-iframe-safety-report")

    frame.get_by_role("link", name="Patient AI activity").click()
    expect(frame.get_by_role("heading", name="Patient AI activity")).to_be_visible()
    expect(frame.get_by_text(stack["card"])).to_be_visible()
    expect(frame.get_by_role("heading", name="Provenance in the EHR (0)")).to_have_count(0)
    shot(page, "ehr-iframe-patient-activity")

    dashboard = _standalone(browser, stack, "cmio-1")
    dashboard.goto(f"{stack['app_url']}/app/safety")
    expect(dashboard.get_by_text("Safety events per 1,000 AI-assisted encounters").first).to_be_visible()
    DOCS_SHOT.parent.mkdir(parents=True, exist_ok=True)
    dashboard.screenshot(path=str(DOCS_SHOT), full_page=True)
    shot(dashboard, "standalone-safety-dashboard")


def test_a_clinician_lands_on_the_review_page_edits_and_signs(browser, stack):  # noqa: F811
    page = browser.new_page(viewport={"width": 480, "height": 1100})
    frame = _ehr(page, stack, "clin-1", stack["held_patient"], {"card": stack["held"], "review": True})
    expect(frame.get_by_role("heading", name="Review AI draft")).to_be_visible()
    expect(frame.get_by_text("Condition/cond-cap").first).to_be_visible()
    shot(page, "ehr-iframe-review-draft")
    box = frame.get_by_label("Discharge summary text — edit before you sign")
    box.focus()
    page.keyboard.press("Control+Home")
    page.keyboard.type("Reviewed on the ward round. ")
    frame.get_by_role("button", name="Sign and file").click()
    expect(frame.get_by_role("status")).to_contain_text("Signed by Practitioner/clin-1")
    shot(page, "ehr-iframe-review-signed")
    drain(stack["app"].extensions[WORKER_KEY])
    [document] = search(stack["fhir"], "DocumentReference", subject=f"Patient/{stack['held_patient']}")
    assert document["docStatus"] == "final"


def _standalone(browser, stack: dict, user: str):  # noqa: F811
    """A wide standalone window (the README's dashboard picture)."""
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(f"{stack['app_url']}/app/launch")
    page.get_by_role("button", name="Sign in with your EHR account").click()
    page.get_by_label("User").select_option(user)
    page.get_by_role("button", name="Sign in and allow").click()
    expect(page.get_by_role("heading", name="AI models")).to_be_visible()
    return page


def _now_local() -> str:
    """Now, to the minute, as a ``datetime-local`` value in UTC (never after the server's now)."""
    return utcnow().strftime("%Y-%m-%dT%H:%M")
