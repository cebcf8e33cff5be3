"""The whole change-control loop of a model version in a real browser, on the sandbox EHR:
medication-safety 1.1.0 goes into shadow; the clinician's calls run both versions; the CMIO reads
the comparison and proposes 1.1.0; approving her own proposal is refused; the safety officer
approves; the clinician's next call is answered by 1.1.0; a rollback; the next call by 1.0.0.
Each step leaves its AuditEvent on the EHR's FHIR server.

The stack is the CMIO journey's (``tests/test_browser_cmio_journey.py``): sandbox EHR, mock EHR
authorization server, Countersign in the chart's cross-site iframe, outbox worker and sealer.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from playwright.sync_api import FrameLocator, Page, expect
from sqlalchemy import create_engine, func, select

from app.audit.tables import CardSet
from sandbox.ehr.synthetic.cohort import CMIO, SAFETY_OFFICER
from tests.test_browser_cmio_journey import SERVICE, page, stack  # noqa: F401 (fixtures)
from tests.test_browser_journey import eventually
from tests.writeback_helpers import search

pytestmark = [pytest.mark.browser, pytest.mark.integration]
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "screenshots" / "model-comparison.png"
GOVERNANCE = "https://countersign.health/fhir/CodeSystem/ai-governance-event"


def sign(tab: Page, ehr_url: str, patient_id: str, orderable: str) -> str:
    """The clinician drafts (order-select) and signs (order-sign) one order: two calls; returns the
    source label of the medication-safety card shown at signing."""
    tab.goto(f"{ehr_url}/patients/{patient_id}")
    tab.select_option("#ehr-user", "clinician")
    tab.select_option("#orderable", orderable)
    tab.click("#add-draft")
    expect(tab.locator("#order-status")).to_have_text("Draft saved.")
    tab.click("#sign-orders")
    card = tab.locator(f'[data-hook="order-sign"] .card[data-service="{SERVICE}"]').first
    expect(card).to_be_visible()
    return card.locator("footer.source").inner_text()


def launch(tab: Page, user: str) -> FrameLocator:
    """Countersign, launched from the chart by ``user``, on the medication-safety model page."""
    tab.select_option("#ehr-user", user)
    tab.click("#launch-countersign")
    frame = tab.frame_locator("#smart-frame")
    expect(frame.get_by_role("heading", name="AI models")).to_be_visible()
    frame.get_by_role("link", name="Countersign Medication Safety").click()
    return frame


def recorded(frame: FrameLocator, text: str) -> None:
    expect(frame.locator("#change-result")).to_contain_text(text)


def test_shadow_compare_two_person_promotion_and_rollback_on_the_sandbox_ehr(
    page,  # noqa: F811
    stack,  # noqa: F811
    fhir_server,
    fresh_patient,
):
    renal, ppi = fresh_patient("cs-renal-metformin"), fresh_patient("cs-duplicate-ppi")

    # The CMIO puts 1.1.0 (installed paused) in shadow.
    page.goto(f"{stack.ehr_url}/patients/{renal}")
    frame = launch(page, "cmio")
    frame.get_by_role("link", name="1.1.0", exact=True).click()
    frame.locator("#new-status").select_option("shadow")
    frame.locator("#reason").fill("Silent validation of 1.1.0 before go-live")
    frame.get_by_role("button", name="Record the change").click()
    recorded(frame, "paused → shadow")

    # Calls made: both versions run; the clinician only ever sees 1.0.0's cards.
    assert "Countersign Medication Safety 1.0.0" in sign(page, stack.ehr_url, renal, "gabapentin-300-tid")
    assert "1.0.0" in sign(page, stack.ehr_url, ppi, "pantoprazole-40-daily")

    # The shadow process records 1.1.0's runs a moment after each answer.
    assert _shadow_runs(stack.database_url, 4) == 4

    # The comparison over the four calls: the duplicate-PPI card, at drafting and at signing, is one
    # only 1.0.0 raised; each such call opens on a page with both versions' cards.
    frame = launch(page, "cmio")
    frame.get_by_role("link", name="compare 1.1.0 with active").click()
    expect(
        frame.get_by_role("heading", name="Countersign Medication Safety: shadow against active")
    ).to_be_visible()
    expect(frame.locator('[data-figure="agreed"]')).to_have_text("2 of 4 (50%)")
    differences = frame.locator("table.differences tbody tr")
    expect(differences).to_have_count(2)
    expect(differences.first).to_contain_text("duplicate-proton-pump-inhibitor")
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    differences.first.get_by_role("link").click()
    expect(frame.get_by_text("1.1.0", exact=False).first).to_be_visible()
    expect(frame.get_by_text("duplicate-proton-pump-inhibitor").first).to_be_visible()

    # Proposed by the CMIO; her own approval is refused.
    frame.get_by_role("link", name="Models").click()
    frame.get_by_role("link", name="Countersign Medication Safety").click()
    frame.get_by_label("Reason for proposing 1.1.0").fill("Fewer duplicate-PPI alerts, same renal cards")
    frame.get_by_role("button", name="Propose 1.1.0 for active").click()
    recorded(frame, "1.1.0 for active")
    approve = frame.get_by_role("button", name="Approve #")
    frame.get_by_label("Reason for approving").fill("I approve my own proposal")
    approve.click()
    recorded(frame, "may not approve it: a different governor")

    # The safety officer approves: the clinician's next call is answered by 1.1.0.
    frame = launch(page, "safety-officer")
    frame.get_by_label("Reason for approving").fill("Comparison reviewed: agreement on renal cards")
    frame.get_by_role("button", name="Approve #").click()
    recorded(frame, "1.1.0 is active, 1.0.0 retired")
    assert "Countersign Medication Safety 1.1.0" in sign(page, stack.ehr_url, renal, "gabapentin-300-tid")

    # One-step rollback by one governor: the next call is answered by 1.0.0 again.
    frame = launch(page, "safety-officer")
    frame.get_by_label("Reason for the rollback").fill("Incident: renal cards reported missing on ward 4")
    frame.get_by_role("button", name="Roll back to 1.0.0").click()
    recorded(frame, "rolled back to 1.0.0")
    assert "Countersign Medication Safety 1.0.0" in sign(page, stack.ehr_url, renal, "gabapentin-300-tid")

    _assert_each_step_on_the_fhir_server(fhir_server, renal)


def _shadow_runs(database_url: str, wanted: int) -> int:
    engine = create_engine(database_url)
    count = select(func.count()).where(CardSet.disposition == "shadow")
    deadline = time.monotonic() + 60
    with engine.connect() as connection:
        while (found := connection.execute(count).scalar()) < wanted and time.monotonic() < deadline:
            connection.rollback()
            time.sleep(0.2)
    engine.dispose()
    return found


def _assert_each_step_on_the_fhir_server(fhir_server: str, patient_id: str) -> None:
    """Shadow run, status change, proposal, refused nothing, approval, rollback: AuditEvents."""

    def codes(agent: str) -> set[str]:
        return {
            coding["code"]
            for audit in search(fhir_server, "AuditEvent", agent=agent)
            for coding in audit.get("subtype", [])
            if coding.get("system") == GOVERNANCE
        }

    wanted = {
        CMIO: {"model-promotion-proposed"},
        SAFETY_OFFICER: {"model-promotion-approved", "model-version-rolled-back"},
    }
    for agent, expected in wanted.items():
        found = eventually(lambda agent=agent: sorted(codes(agent)), lambda c, e=expected: e <= set(c))
        assert expected <= set(found), (agent, found)
    shadows = eventually(
        lambda: [
            a
            for a in search(fhir_server, "AuditEvent", entity=f"Patient/{patient_id}")
            if any(c.get("code") == "shadow" for c in a.get("subtype", []))
        ],
        bool,
    )
    assert shadows, "the shadow run of 1.1.0 left its AuditEvent"
