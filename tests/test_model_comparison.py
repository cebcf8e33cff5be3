"""A shadow version against the active one on live calls: the comparison's figures from real hook
calls and real feedback (SQLite and PostgreSQL), its pages and charts, who may read them, and the
model card's versions, promotion forms and history."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, expect, sync_playwright
from sqlalchemy import text

from app import DATABASE_KEY
from app.evaluation.comparison import compare
from sandbox.mock_ehr_auth import BackgroundServer, MockEhr
from tests.builders import METFORMIN, full_prefetch, medication_request, order_sign_request
from tests.governance_helpers import change
from tests.smart_helpers import CALLBACK, PATIENT, free_port, mock_ehr, smart_settings
from tests.test_feedback import FEEDBACK, SERVICE, accepted, overridden
from tests.views_helpers import csrf_of, launch
from tests.writeback_helpers import put

MODEL = "medication-safety"
OMEPRAZOLE = ("7646", "omeprazole 20 MG Delayed Release Oral Capsule")
PANTOPRAZOLE = ("40790", "pantoprazole 40 MG Delayed Release Oral Tablet")
ATORVASTATIN = ("617312", "atorvastatin 20 MG Oral Tablet")
CLARITHROMYCIN = ("21212", "clarithromycin 500 MG Oral Tablet")
DUPLICATE_PPI = "duplicate-proton-pump-inhibitor"
STATIN_MACROLIDE = "atorvastatin-clarithromycin"
COMPARE = f"/app/models/{MODEL}/compare"


@pytest.fixture
def database_url(both_databases: str) -> str:
    """Every test here runs on SQLite and on PostgreSQL."""
    return both_databases


@pytest.fixture
def ehr(fhir_server: str) -> Iterator[MockEhr]:
    with mock_ehr(fhir_server, CALLBACK) as running:
        yield running


@pytest.fixture
def smart_app(make_app, ehr):
    return make_app(**smart_settings(ehr))


def call(client, auth, patient_id: str, orders: list[tuple[str, tuple[str, str], float, int]], egfr: float):
    """One order-sign call for ``patient_id``; returns (hookInstance, cards shown)."""
    drafts = [
        medication_request(draft, drug, dose_mg=mg, per_day=per_day, patient_id=patient_id)
        for draft, drug, mg, per_day in orders
    ]
    body = order_sign_request(
        drafts, full_prefetch(egfr_value=egfr, patient_id=patient_id), patient_id=patient_id
    )
    response = client.post(SERVICE, json=body, headers=auth(SERVICE))
    assert response.status_code == 200, response.get_data(as_text=True)
    return body["hookInstance"], response.get_json()["cards"]


def duplicate_ppi(client, auth, patient_id: str):
    orders = [("ppi-1", OMEPRAZOLE, 20, 1), ("ppi-2", PANTOPRAZOLE, 40, 1)]
    return call(client, auth, patient_id, orders, egfr=90)


def statin_with_macrolide(client, auth, patient_id: str):
    orders = [("statin", ATORVASTATIN, 40, 1), ("macrolide", CLARITHROMYCIN, 500, 2)]
    return call(client, auth, patient_id, orders, egfr=90)


def metformin_low_egfr(client, auth, patient_id: str):
    return call(client, auth, patient_id, [("met", METFORMIN, 1000, 2)], egfr=25)


def feedback(client, auth, items: list[dict]) -> None:
    response = client.post(FEEDBACK, json={"feedback": items}, headers=auth(FEEDBACK))
    assert response.status_code == 200, response.get_data(as_text=True)


def designed_calls(app, client, auth) -> dict:
    """1.1.0 in shadow beside active 1.0.0, then five calls whose answers differ by design, and
    decisions on two of the PPI cards 1.1.0 would drop. A call made before the shadow started pairs
    with nothing."""
    before, _ = metformin_low_egfr(client, auth, "cmp-before")
    change(app, "shadow", version="1.1.0")
    ppi_accepted, (ppi_card_1,) = duplicate_ppi(client, auth, "cmp-ppi-1")
    ppi_overridden, (ppi_card_2,) = duplicate_ppi(client, auth, "cmp-ppi-2")
    statin, statin_cards = statin_with_macrolide(client, auth, "cmp-statin")
    metformin_1, (metformin_card,) = metformin_low_egfr(client, auth, "cmp-met-1")
    metformin_2, _ = metformin_low_egfr(client, auth, "cmp-met-2")
    app.extensions["cds_hooks"].backend.shadow.drain()
    assert [c["summary"] for c in (ppi_card_1, ppi_card_2)] and statin_cards == []
    feedback(client, auth, [accepted(ppi_card_1), overridden(ppi_card_2), accepted(metformin_card)])
    return {
        "before": before,
        "ppi": (ppi_accepted, ppi_overridden),
        "statin": statin,
        "metformin": (metformin_1, metformin_2),
        "ppi_card": ppi_card_1,
    }


def rows(app, sql: str, **params) -> list:
    with app.extensions[DATABASE_KEY].connect() as connection:
        return list(connection.execute(text(sql), params))


def test_the_comparison_pairs_calls_and_counts_agreement_differences_and_decisions(app, client, auth):
    calls = designed_calls(app, client, auth)
    with app.extensions[DATABASE_KEY].connect() as connection:
        result = compare(connection, MODEL, "1.0.0", "1.1.0")

    assert (result.calls, result.compared, result.agreed, result.failed) == (5, 5, 2, 0)
    assert result.agreement == pytest.approx(2 / 5)
    differences = {d.hook_instance: (d.only_active, d.only_shadow) for d in result.differences}
    ppi_1, ppi_2 = calls["ppi"]
    assert differences == {
        ppi_1: ((DUPLICATE_PPI,), ()),
        ppi_2: ((DUPLICATE_PPI,), ()),
        calls["statin"]: ((), (STATIN_MACROLIDE,)),
    }
    assert [d.hook_instance for d in result.differences] == [calls["statin"], ppi_2, ppi_1]  # newest first
    assert {d.patient_id for d in result.differences} == {"cmp-ppi-1", "cmp-ppi-2", "cmp-statin"}
    assert calls["before"] not in differences

    # The PPI cards 1.1.0 would drop: one accepted, one overridden, through real feedback.
    assert (result.dropped.accepted, result.dropped.overridden, result.dropped.undecided) == (1, 1, 0)
    assert result.dropped.acceptance_rate == 0.5
    # Every 1.0.0 card on the paired calls: 2 PPI + 2 metformin, of which 2 accepted, 1 overridden.
    assert (result.active_cards.accepted, result.active_cards.overridden, result.active_cards.undecided) == (
        2,
        1,
        1,
    )


def test_confidence_and_latency_equal_an_independent_reading_of_the_raw_records(app, client, auth):
    designed_calls(app, client, auth)
    with app.extensions[DATABASE_KEY].connect() as connection:
        result = compare(connection, MODEL, "1.0.0", "1.1.0")

    for version, disposition, histogram, latency in (
        ("1.0.0", "issued", result.active_confidence, result.active_latency),
        ("1.1.0", "shadow", result.shadow_confidence, result.shadow_latency),
    ):
        paired = "SELECT hook_instance FROM card_set WHERE disposition = 'shadow'"
        confidences = [
            r.confidence
            for r in rows(
                app,
                f"SELECT i.confidence FROM issued_card i JOIN card_set s ON s.id = i.card_set_id "
                f"WHERE s.model_version = :version AND s.disposition = :disposition "
                f"AND s.hook_instance IN ({paired})",
                version=version,
                disposition=disposition,
            )
        ]
        expected = [0] * 10
        for confidence in confidences:
            expected[min(int(confidence * 10 + 1e-9), 9)] += 1
        assert histogram.counts == tuple(expected) and histogram.total == len(confidences) > 0
        times = sorted(
            r.latency_ms
            for r in rows(
                app,
                f"SELECT latency_ms FROM card_set WHERE model_version = :version "
                f"AND disposition = :disposition AND hook_instance IN ({paired})",
                version=version,
                disposition=disposition,
            )
        )
        assert latency.n == len(times) == 5
        assert (latency.p50, latency.p95) == (times[2], times[4])  # nearest rank of 5
        assert latency.mean == pytest.approx(sum(times) / 5)


def test_limit_keeps_the_most_recent_calls_and_a_version_never_in_shadow_pairs_with_nothing(
    app, client, auth
):
    calls = designed_calls(app, client, auth)
    with app.extensions[DATABASE_KEY].connect() as connection:
        recent = compare(connection, MODEL, "1.0.0", "1.1.0", limit=3)
        reversed_roles = compare(connection, MODEL, "1.1.0", "1.0.0")
    assert (recent.calls, recent.agreed) == (3, 2)  # both metformin calls and the statin call
    assert [d.hook_instance for d in recent.differences] == [calls["statin"]]
    assert (recent.dropped.total, recent.dropped.acceptance_rate) == (0, None)
    assert (reversed_roles.calls, reversed_roles.agreement, reversed_roles.active_latency) == (0, None, None)


# Pages


def signed_in(smart_app, ehr: MockEhr, user: str):
    client = smart_app.test_client()
    landed = launch(client, ehr, user)
    assert landed.status_code == 303, landed.get_data(as_text=True)
    return client


def figure(page: str, name: str) -> str:
    return re.search(rf'data-figure="{name}">([^<]*)<', page).group(1).strip()


def test_the_comparison_page_shows_figures_charts_and_links_each_differing_call(smart_app, ehr, auth):
    hooks = smart_app.test_client()
    calls = designed_calls(smart_app, hooks, auth)
    cmio = signed_in(smart_app, ehr, "cmio-1")

    response = cmio.get(COMPARE)  # default: the first version in shadow, against the active one
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "1.1.0 (shadow) against 1.0.0 (active)" in page
    assert (figure(page, "calls"), figure(page, "agreed")) == ("5", "2 of 5 (40%)")
    assert (figure(page, "dropped-accepted"), figure(page, "dropped-overridden")) == ("1", "1")
    assert figure(page, "dropped-acceptance") == "50%"
    charts = re.findall(r'<svg class="chart[^"]*"[^>]*role="img" aria-label="([^"]+)"', page)
    assert len(charts) == 3 and any("Confidence" in c for c in charts) and any("latency" in c for c in charts)
    assert page.count('class="column series-shadow"') >= 3  # shadow bars in the confidence and latency charts
    for hook_instance in (*calls["ppi"], calls["statin"]):
        assert f'href="/app/calls/{hook_instance}"' in page
    assert f'href="/app/calls/{calls["metformin"][0]}"' not in page  # they agree: no link

    call_page = cmio.get(f"/app/calls/{calls['ppi'][1]}")
    assert call_page.status_code == 200
    shown = call_page.get_data(as_text=True)
    assert "medication-safety 1.0.0" in shown and "medication-safety 1.1.0" in shown
    sets = re.findall(r"<article class=\"call-set[^\"]*\".*?</article>", shown, re.S)
    assert len(sets) == 2
    request_path, shadow = sets
    assert "data-disposition>issued<" in request_path and f'data-rule="{DUPLICATE_PPI}"' in request_path
    assert "overridden" in request_path
    assert "data-disposition>shadow<" in shadow and "No card." in shadow
    assert cmio.get("/app/calls/00000000-0000-4000-8000-000000000000").status_code == 404


def test_only_cmio_safety_officer_and_auditor_read_the_comparison_and_the_call(smart_app, ehr, auth):
    hooks = smart_app.test_client()
    hook_instance, _ = duplicate_ppi(hooks, auth, "cmp-roles")
    anonymous = smart_app.test_client()
    assert anonymous.get(COMPARE).status_code == 401
    clinician = signed_in(smart_app, ehr, "clin-1")
    assert clinician.get(COMPARE).status_code == 403
    assert clinician.get(f"/app/calls/{hook_instance}").status_code == 403
    for user in ("cmio-1", "so-1", "aud-1"):
        reader = signed_in(smart_app, ehr, user)
        assert reader.get(COMPARE).status_code == 200, user
        assert reader.get(f"/app/calls/{hook_instance}").status_code == 200, user
    assert signed_in(smart_app, ehr, "aud-1").get("/app/models/no-such-model/compare").status_code == 404


def test_without_a_shadow_or_a_paired_call_the_page_says_so(smart_app, ehr, auth):
    cmio = signed_in(smart_app, ehr, "cmio-1")
    page = cmio.get(COMPARE).get_data(as_text=True)
    assert "No version of Countersign Medication Safety is in shadow" in page
    assert 'role="img"' not in page
    change(smart_app, "shadow", version="1.1.0")
    page = cmio.get(COMPARE).get_data(as_text=True)
    assert "No call answered by both 1.0.0 (active) and 1.1.0 (shadow) yet" in page
    assert cmio.get(COMPARE, query_string={"shadow": "9.9.9"}).status_code == 404


def test_the_model_card_lists_versions_and_offers_promotion_to_governors(smart_app, ehr, auth):
    change(smart_app, "shadow", version="1.1.0")
    cmio = signed_in(smart_app, ehr, "cmio-1")
    page = cmio.get(f"/app/models/{MODEL}").get_data(as_text=True)
    versions = page.split('id="versions-title"')[1].split("</table>")[0]
    assert '<span class="status status-active">active</span>' in versions
    assert '<span class="status status-shadow">shadow</span>' in versions
    assert f'href="/app/models/{MODEL}/compare?shadow=1.1.0"' in versions
    assert f'href="/app/models/{MODEL}?version=1.1.0"' in versions
    assert '<input type="hidden" name="version" value="1.0.0">' in page  # the shown card's version
    assert 'data-endpoint="/api/models/medication-safety/proposals"' in page
    assert "Nothing to roll back" in page
    for kept in ('id="change-control"', 'id="new-status"', 'id="reason"', 'id="current-status"'):
        assert kept in page
    assert "Record the change" in page and 'id="change-result" role="status"' in page

    csrf = csrf_of(page)
    proposed = cmio.post(
        f"/api/models/{MODEL}/proposals",
        json={"version": "1.1.0", "reason": "Shadow agreed on 40% of calls; PPI rule retired"},
        headers={"X-CSRF-Token": csrf},
    )
    assert proposed.status_code == 201, proposed.get_json()
    proposal = proposed.get_json()["id"]
    page = cmio.get(f"/app/models/{MODEL}").get_data(as_text=True)
    assert f'data-endpoint="/api/proposals/{proposal}/approve"' in page
    assert f'data-endpoint="/api/proposals/{proposal}/withdraw"' in page
    assert "You proposed it: a different governor must approve it." in page
    assert "Morgan CMIO" in page or "Practitioner/cmio-1" in page
    assert "proposed 1.1.0 for active" in page and "Shadow agreed on 40% of calls" in page

    officer = signed_in(smart_app, ehr, "so-1")
    officer_csrf = csrf_of(officer.get(f"/app/models/{MODEL}").get_data(as_text=True))
    approved = officer.post(
        f"/api/proposals/{proposal}/approve",
        json={"reason": "Reviewed the comparison"},
        headers={"X-CSRF-Token": officer_csrf},
    )
    assert approved.status_code == 200, approved.get_json()
    page = officer.get(f"/app/models/{MODEL}").get_data(as_text=True)
    assert 'id="current-status">active<' in page and "<h1>Countersign Medication Safety 1.1.0</h1>" in page
    assert 'data-endpoint="/api/models/medication-safety/rollback"' in page
    assert "an incident action: one governor rolls back at once" in page.lower()
    assert f"approved #{proposal}: 1.1.0 active, 1.0.0 retired" in page

    auditor = signed_in(smart_app, ehr, "aud-1")
    read_only = auditor.get(f"/app/models/{MODEL}").get_data(as_text=True)
    assert "data-endpoint" not in read_only and "Promotion history" in read_only
    clinician = signed_in(smart_app, ehr, "clin-1")
    assert "/compare?shadow=" not in clinician.get(f"/app/models/{MODEL}").get_data(as_text=True)


# The model card's forms in a real browser, inside the EHR's cross-site iframe


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield launched
        launched.close()


@pytest.mark.browser
def test_a_governor_proposes_is_refused_approving_their_own_and_changes_a_status_in_the_iframe(
    make_app, fhir_server, browser
):
    put(fhir_server, PATIENT)
    port = free_port()
    app_url = f"http://localhost:{port}"
    with mock_ehr(fhir_server, f"{app_url}/app/callback") as ehr:
        app = make_app(public_base_url=app_url, **smart_settings(ehr))
        change(app, "shadow", version="1.1.0")
        with BackgroundServer(app, "127.0.0.1", port):
            page = browser.new_page(viewport={"width": 480, "height": 1000})
            query = f"app={app_url}/app/launch&user=cmio-1&patient=smart-p1&width=360px"
            page.goto(f"{ehr.state.public_url}/ehr?{query}")
            frame = page.frame_locator("#app")
            expect(frame.get_by_role("heading", name="AI models")).to_be_visible()
            frame.get_by_role("link", name="Countersign Medication Safety").first.click()
            expect(frame.get_by_role("link", name="compare 1.1.0 with active")).to_be_visible()

            frame.get_by_label("Reason for proposing 1.1.0").fill("Agreement reviewed on the comparison")
            frame.get_by_role("button", name="Propose 1.1.0 for active").click()
            status = frame.get_by_role("status")
            expect(status).to_contain_text("Recorded: proposal #1, 1.1.0 for active replacing 1.0.0")
            expect(frame.get_by_role("button", name="Approve #1")).to_be_visible()  # the reloaded page

            frame.get_by_label("Reason for approving #1").fill("Looks right to me")
            frame.get_by_role("button", name="Approve #1").click()
            expect(status).to_contain_text(
                "Not recorded: Practitioner/cmio-1 proposed #1 and may not approve it"
            )

            frame.get_by_label("New status").select_option("paused")
            frame.locator("#reason").fill("Override cluster under review")
            frame.get_by_role("button", name="Record the change").click()
            expect(status).to_contain_text("Recorded: active → paused.")
            expect(frame.locator("#current-status")).to_have_text("paused")
            expect(frame.get_by_role("button", name="Withdraw #1")).to_be_visible()
