"""Journey (b) in a real browser: a CMIO opens the metformin/renal patient in the sandbox EHR,
launches Countersign in the chart's cross-site iframe (EHR launch through the mock EHR's SMART
server), finds the ledger record of the card the clinician was shown, pauses medication-safety
with a reason; the clinician's next order-sign on that patient then gets no card from it.

The stack is the demo's (``sandbox.demo_smart``): the sandbox EHR and the mock EHR on 127.0.0.1,
Countersign on localhost, so the app's cookie is a third-party (partitioned) cookie in the iframe.
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect, sync_playwright
from sqlalchemy import create_engine, select

from app import SEALER_KEY, WORKER_KEY, create_app
from app.audit.ledger import LedgerEntry
from app.audit.tables import CardSet
from app.migrate import upgrade
from app.settings import Settings, WriteBackServer
from cds_hooks.auth import TrustedClient
from sandbox import demo_smart
from sandbox.ehr import SandboxConfig
from sandbox.ehr import create_app as create_sandbox_app
from sandbox.ehr.cds_client import SANDBOX_ISSUER, ClientIdentity
from sandbox.ehr.synthetic.cohort import CLINICIAN, CMIO
from sandbox.mock_ehr_auth import BackgroundServer
from tests.live_server import LiveServer
from tests.smart_helpers import free_port
from tests.test_browser_journey import CHROMIUM, CHROMIUM_ARGS, eventually
from tests.writeback_helpers import search

pytestmark = [pytest.mark.browser, pytest.mark.integration]
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "screenshots" / "cmio-app.png"
SERVICE = "medication-safety"


@dataclass
class Stack:
    ehr_url: str
    database_url: str


@pytest.fixture
def stack(
    make_settings: Callable[..., Settings], fhir_server: str, identity: ClientIdentity
) -> Iterator[Stack]:
    """Countersign (localhost) registered with the mock EHR (127.0.0.1) that fronts the FHIR server,
    and the sandbox EHR (127.0.0.1) as its CDS client and SMART launcher; outbox worker and ledger
    sealer running."""
    secret = secrets.token_urlsafe(24)
    port = free_port()
    app_url = f"http://localhost:{port}"
    ehr = LiveServer()
    with demo_smart.mock_ehr(fhir_server, app_url, secret) as auth:
        settings = make_settings(
            public_base_url=app_url,
            trusted_clients=[TrustedClient(iss=SANDBOX_ISSUER, jwks=identity.jwks())],
            writeback_servers=[WriteBackServer(base_url=fhir_server)],
            writeback_default_server=fhir_server,
            outbox_in_process=False,
            smart_ehrs=[demo_smart.smart_ehr(auth.state.public_url, secret, ehr.url)],
            smart_allow_http_loopback=True,
        )
        upgrade(settings.database_url)
        countersign = create_app(settings)
        stop_worker = countersign.extensions[WORKER_KEY].start_in_background()
        stop_sealer = countersign.extensions[SEALER_KEY].start_in_background()
        launcher = demo_smart.launcher(auth.state.public_url, app_url)
        sandbox = SandboxConfig(fhir_server, f"{app_url}/cds-services", identity, launcher=launcher)
        with BackgroundServer(countersign, "127.0.0.1", port):
            ehr.serve(create_sandbox_app(sandbox))
            yield Stack(ehr.url, settings.database_url)
            stop_worker.set()
            stop_sealer.set()
            ehr.stop()


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser.new_page(viewport={"width": 1360, "height": 1300})
        browser.close()


def test_cmio_follows_the_cards_record_and_pauses_the_model(page, stack, fhir_server, fresh_patient):
    patient_id = fresh_patient("cs-renal-metformin")
    reason = f"Renal dosing cards under review ({uuid.uuid4().hex[:8]})"

    # The clinician signs gabapentin and is shown medication-safety's renal-dose card.
    page.goto(f"{stack.ehr_url}/patients/{patient_id}")
    expect(page.locator("#ehr-user")).to_have_value("clinician")
    page.select_option("#orderable", "gabapentin-300-tid")
    page.click("#add-draft")
    expect(page.locator("#order-status")).to_have_text("Draft saved.")
    page.click("#sign-orders")
    shown = page.locator(f'[data-hook="order-sign"] .card[data-service="{SERVICE}"]')
    expect(shown).to_have_count(1)
    card_uuid = shown.get_attribute("data-card-uuid")

    # The CMIO launches Countersign from the chart and finds that card's record in the ledger.
    page.select_option("#ehr-user", "cmio")
    page.click("#launch-countersign")
    frame = page.frame_locator("#smart-frame")
    expect(frame.get_by_role("heading", name="AI models")).to_be_visible()
    expect(frame.get_by_text(f"{CMIO} · cmio")).to_be_visible()
    frame.get_by_role("link", name="Audit trail").click()
    frame.get_by_label("Kind").select_option("card-set-issued")
    frame.get_by_role("button", name="Filter").click()
    record = frame.locator("table.trail tbody tr", has_text=card_uuid)
    expect(record).to_have_count(1)
    expect(record).to_contain_text(f'"patient":"{patient_id}"')

    # ... and pauses the model through change control.
    frame.get_by_role("link", name="Models").click()
    frame.get_by_role("link", name="Countersign Medication Safety").click()
    frame.get_by_label("New status").select_option("paused")
    frame.get_by_label("Reason").fill(reason)
    frame.get_by_role("button", name="Record the change").click()
    expect(frame.get_by_role("status")).to_contain_text("Recorded: active → paused")
    frame.get_by_role("link", name="Audit trail").click()
    expect(frame.get_by_text(reason)).to_be_visible()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    # The clinician's next order-sign on that patient gets no card from the paused model.
    page.select_option("#ehr-user", "clinician")
    page.click("#sign-orders")
    expect(page.locator("#order-status")).not_to_have_text("Checking orders before signing…")
    expect(page.locator(f'[data-hook="order-sign"] .card[data-service="{SERVICE}"]')).to_have_count(0)

    _assert_suppressed(stack.database_url, patient_id)
    _assert_written_back(fhir_server, patient_id, card_uuid, reason)


def _assert_suppressed(database_url: str, patient_id: str) -> None:
    """Countersign's own record: the call after the pause is kept, as suppressed, with no card."""
    engine = create_engine(database_url)
    with engine.connect() as connection:
        calls = (
            connection.execute(
                select(CardSet.disposition)
                .where(CardSet.patient_id == patient_id, CardSet.service_id == SERVICE)
                .where(CardSet.hook == "order-sign")
                .order_by(CardSet.id)
            )
            .scalars()
            .all()
        )
        kinds = connection.execute(select(LedgerEntry.kind).order_by(LedgerEntry.seq)).scalars().all()
    engine.dispose()
    assert calls == ["issued", "paused"]
    assert kinds[-1] == "invocation-suppressed"
    assert "model-status-changed" in kinds


def _assert_written_back(fhir_server: str, patient_id: str, card_uuid: str, reason: str) -> None:
    """The EHR's FHIR server: the card's Provenance (AI author) and the change-control record."""
    [card_provenance] = eventually(
        lambda: [
            p
            for p in search(fhir_server, "Provenance", entity=f"Patient/{patient_id}")
            if p["activity"]["text"] == "AI inference (CDS Hooks order-sign)"
        ],
        bool,
    )
    assert card_provenance["agent"][0]["who"]["reference"].startswith("Device/")
    group_ref = card_provenance["target"][0]["reference"]
    assert group_ref.startswith("RequestGroup/")
    group = requests.get(f"{fhir_server}/{group_ref}", timeout=10).json()
    assert [action["id"] for action in group["action"]] == [card_uuid]
    [change] = eventually(
        lambda: [p for p in search(fhir_server, "Provenance", agent=CMIO) if reason in json.dumps(p)],
        bool,
    )
    assert change["activity"]["text"].endswith("active -> paused")
    assert change["target"][0]["reference"].startswith("Device/")
    [audit] = eventually(
        lambda: [a for a in search(fhir_server, "AuditEvent", agent=CMIO) if reason in json.dumps(a)],
        bool,
    )
    assert {c["code"] for c in audit["subtype"]} >= {"model-version-paused"}
    assert audit["agent"][0]["who"]["reference"] == CMIO


def test_a_cards_smart_link_launches_countersign_in_the_chart(page, stack, fresh_patient):
    patient_id = fresh_patient("cs-renal-metformin")
    page.goto(f"{stack.ehr_url}/patients/{patient_id}")
    page.select_option("#orderable", "gabapentin-300-tid")
    page.click("#add-draft")
    card = page.locator(f'[data-hook="order-select"] .card[data-service="{SERVICE}"]')
    expect(card).to_have_count(1)
    card.locator("a.link.smart").click()
    frame = page.frame_locator("#smart-frame")
    expect(frame.get_by_role("heading", name="AI models")).to_be_visible()
    expect(frame.get_by_text(f"{CLINICIAN} · clinician")).to_be_visible()
    expect(frame.get_by_role("link", name="Audit trail")).to_have_count(0)
    assert len(page.context.pages) == 1  # in the chart's iframe, not a new window
