"""Journey (a) in a real browser: a clinician opens the metformin patient (eGFR 25), drafts and
signs two orders, accepts the renal-dose card, overrides the other with a reason; the FHIR server
then holds the updated order, the Provenance (AI author, clinician verifier) and the AuditEvents.

Debian's Chromium driven by Playwright (``executable_path``; no browser is downloaded). The
sandbox EHR and Countersign run on real HTTP ports; Countersign fetches the EHR's JWKS by URL and
its outbox worker runs in the background, as in the demo.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from app import WORKER_KEY, create_app
from app.migrate import upgrade
from app.settings import Settings
from cds_hooks.auth import TrustedClient
from sandbox.ehr import SandboxConfig
from sandbox.ehr import create_app as create_sandbox_app
from sandbox.ehr.cds_client import SANDBOX_ISSUER, ClientIdentity
from tests.live_server import LiveServer
from tests.sandbox_fixtures import countersign_settings
from tests.writeback_helpers import search

pytestmark = [pytest.mark.browser, pytest.mark.integration]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "screenshots" / "ehr-card.png"
CLINICIAN = "Practitioner/cs-dr-hale"


@pytest.fixture
def ehr_url(
    make_settings: Callable[..., Settings], fhir_server: str, identity: ClientIdentity
) -> Iterator[str]:
    """Countersign trusting the EHR's published JWKS, and the sandbox EHR, both over HTTP."""
    ehr, service = LiveServer(), LiveServer()
    trusted = TrustedClient(iss=SANDBOX_ISSUER, jwks_url=f"{ehr.url}/.well-known/jwks.json")
    settings = countersign_settings(make_settings, service.url, fhir_server, trusted, outbox_in_process=False)
    upgrade(settings.database_url)
    countersign = create_app(settings)
    stop_worker = countersign.extensions[WORKER_KEY].start_in_background()
    service.serve(countersign)
    ehr.serve(create_sandbox_app(SandboxConfig(fhir_server, f"{service.url}/cds-services", identity)))
    yield ehr.url
    stop_worker.set()
    ehr.stop()
    service.stop()


@pytest.fixture
def page() -> Iterator[Page]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser.new_page(viewport={"width": 1360, "height": 1100})
        browser.close()


def eventually(
    find: Callable[[], list[dict]], done: Callable[[list[dict]], bool], timeout: float = 30
) -> list:
    """Write-back is asynchronous (the outbox): poll the FHIR server until it holds what we expect."""
    deadline = time.monotonic() + timeout
    while True:
        found = find()
        if done(found) or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_clinician_accepts_the_renal_dose_card_and_overrides_the_other(
    page, ehr_url, fhir_server, fresh_patient
):
    patient_id = fresh_patient("cs-renal-metformin")
    page.goto(f"{ehr_url}/")
    page.click(f'a[href="/patients/{patient_id}"]')
    expect(page.locator(".banner-name")).to_have_text("ELLISON, Margaret")
    expect(page.locator("#cds-status")).to_have_text("No open cards.")

    for orderable in ("gabapentin-300-tid", "ibuprofen-400-tid"):
        page.select_option("#orderable", orderable)
        page.click("#add-draft")
        expect(page.locator("#order-status")).to_have_text("Draft saved.")
    expect(page.locator("#drafts li")).to_have_count(2)

    page.click("#sign-orders")
    signing = page.locator('[data-hook="order-sign"] .card')
    expect(signing).to_have_count(2)
    renal = signing.filter(has_text="Gabapentin max 700 mg/day")
    other = signing.filter(has_text="Avoid ibuprofen")
    expect(renal.locator(".source a")).to_have_attribute("href", re.compile(r"/models/medication-safety"))
    expect(renal.locator(".detail strong").first).to_have_text("Evidence used")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    renal.get_by_role("button", name="Change to gabapentin 600 mg once daily").click()
    expect(renal.locator(".card-status")).to_have_text("Accepted: Change to gabapentin 600 mg once daily")
    expect(page.locator("#drafts li", has_text="gabapentin")).to_contain_text("600 mg once daily")

    other.get_by_role("button", name="Override", exact=True).click()
    other.get_by_label("Override reason").select_option("risk-benefit-ratio")
    other.locator("textarea").fill("Three days only; renal function rechecked on Friday")
    other.get_by_role("button", name="Confirm override").click()
    expect(other.locator(".card-status")).to_have_text(
        "Overridden: Recipient assessment of risk/benefit ratio"
    )

    page.click("#complete-signing")
    expect(page.locator("#order-status")).to_have_text("Signed 2 order(s).")
    expect(page.locator("#medications li", has_text="gabapentin")).to_contain_text("600 mg once daily")

    orders = search(fhir_server, "MedicationRequest", patient=patient_id, status="active")
    gabapentin = next(o for o in orders if "gabapentin" in o["medicationCodeableConcept"]["text"])
    assert gabapentin["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"] == 600
    assert any(label["code"] == "AIAST" for label in gabapentin["meta"]["security"])

    provenances = eventually(
        lambda: search(fhir_server, "Provenance", entity=f"Patient/{patient_id}"),
        lambda found: any("verifier" in str(p["agent"]) for p in found),
    )
    accepted = next(p for p in provenances if "verifier" in str(p["agent"]))
    agents = {a["type"]["coding"][0]["code"]: a for a in accepted["agent"]}
    assert agents["verifier"]["who"]["reference"] == CLINICIAN
    assert agents["author"]["who"]["reference"].startswith("Device/")
    assert agents["author"]["role"][0]["coding"][0]["code"] == "Artificial-Intelligence"
    assert accepted["target"][0]["reference"].startswith(f"MedicationRequest/{gabapentin['id']}/_history/")

    audits = eventually(
        lambda: search(fhir_server, "AuditEvent", patient=patient_id),
        lambda found: [a["subtype"][0]["code"] for a in found].count("create") >= 2,
    )
    subtypes = [a["subtype"][0]["code"] for a in audits]
    assert subtypes.count("create") == 2  # the accept and the override
    assert "cds-hooks-service-call" in subtypes
    [task] = eventually(lambda: search(fhir_server, "Task", patient=patient_id), bool)
    assert task["statusReason"]["coding"][0]["code"] == "risk-benefit-ratio"
    assert task["note"][0]["text"] == "Three days only; renal function rechecked on Friday"
