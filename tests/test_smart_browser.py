"""Real browser (Debian Chromium via Playwright): EHR launch in a cross-site iframe, standalone launch,
each view, keyboard-driven change control. Screenshots go to ``test-output/browser/``.

The EHR page is served from 127.0.0.1 and the app from localhost: different sites, so the app's
cookie is a third-party cookie inside the iframe, as in a real EHR.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from sandbox.mock_ehr_auth import BackgroundServer, MockEhr
from tests.smart_helpers import PATIENT, free_port, mock_ehr, smart_settings
from tests.writeback_helpers import put

pytestmark = pytest.mark.browser
CHROMIUM = "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "test-output" / "browser"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


@pytest.fixture
def stack(make_app, fhir_server: str) -> Iterator[tuple[str, MockEhr]]:
    """The app on http://localhost:<port>, the mock EHR on http://127.0.0.1:<port>."""
    put(fhir_server, PATIENT)
    port = free_port()
    app_url = f"http://localhost:{port}"
    with mock_ehr(fhir_server, f"{app_url}/app/callback") as ehr:
        app = make_app(public_base_url=app_url, **smart_settings(ehr))
        with BackgroundServer(app, "127.0.0.1", port):
            yield app_url, ehr


def shot(page: Page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_ehr_launch_inside_a_cross_site_iframe_and_change_control_by_keyboard(browser, stack):
    app_url, ehr = stack
    page = browser.new_page(viewport={"width": 480, "height": 900})
    query = urlencode(
        {"app": f"{app_url}/app/launch", "user": "cmio-1", "patient": "smart-p1", "width": "360px"}
    )
    page.goto(f"{ehr.state.public_url}/ehr?{query}")
    frame = page.frame_locator("#app")
    expect(frame.get_by_role("heading", name="AI models")).to_be_visible()
    expect(frame.get_by_text("Robin Testpatient")).to_be_visible()
    shot(page, "ehr-iframe-catalogue")

    frame.get_by_role("link", name="Countersign Medication Safety").click()
    expect(frame.get_by_role("heading", name="Change control")).to_be_visible()
    frame.get_by_label("New status").focus()
    page.keyboard.press("End")  # options in order: active (disabled), shadow, paused, retired
    frame.get_by_label("New status").select_option("paused")
    frame.get_by_label("Reason").fill("Override cluster under review")
    frame.get_by_label("Reason").press("Tab")
    page.keyboard.press("Enter")
    expect(frame.get_by_role("status")).to_contain_text("Recorded: active → paused")
    shot(page, "ehr-iframe-change-control")

    frame.get_by_role("link", name="Audit trail").click()
    expect(frame.get_by_text("Ledger chain verified: 2 entries, intact.")).to_be_visible()  # sign-in, change
    expect(frame.get_by_text("Override cluster under review")).to_be_visible()
    shot(page, "ehr-iframe-audit-trail")


def test_standalone_launch_as_an_auditor(browser, stack):
    app_url, _ = stack
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.goto(f"{app_url}/app/launch")
    shot(page, "standalone-launch-page")
    page.get_by_role("button", name="Sign in with your EHR account").click()
    page.get_by_label("User").select_option("aud-1")
    page.get_by_role("button", name="Sign in and allow").click()
    expect(page.get_by_role("heading", name="AI models")).to_be_visible()
    assert page.url == f"{app_url}/app/"  # code and state left the address bar
    shot(page, "standalone-catalogue")
    page.get_by_role("link", name="Audit trail").click()
    expect(page.get_by_text("Ledger chain verified")).to_be_visible()
    shot(page, "standalone-audit-trail")
    page.goto(f"{app_url}/app/models/medication-safety")
    expect(page.get_by_role("heading", name="Change control")).to_have_count(0)
    shot(page, "standalone-model-card-auditor")
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Signed out")).to_be_visible()
    page.goto(f"{app_url}/app/audit")
    expect(page.get_by_role("button", name="Sign in with your EHR account")).to_be_visible()
