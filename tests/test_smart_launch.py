"""SMART App Launch against the mock EHR (a real Authlib authorization server over HTTP)."""

from __future__ import annotations

import pytest

from tests.smart_helpers import ehr_launch, smart_settings, standalone_launch


@pytest.fixture
def smart_app(make_app, ehr):
    return make_app(**smart_settings(ehr))


def test_an_ehr_launch_signs_the_user_in_with_the_patient_in_context(smart_app, ehr):
    client = smart_app.test_client()
    landed = ehr_launch(client, ehr, "cmio-1", patient="smart-p1")
    assert landed.status_code == 303 and landed.headers["Location"] == "/app/"
    page = client.get("/app/").get_data(as_text=True)
    assert "Robin Testpatient" in page
    assert "Practitioner/cmio-1 · cmio" in page


def test_a_standalone_launch_signs_the_user_in_without_a_patient(smart_app, ehr):
    client = smart_app.test_client()
    assert standalone_launch(client, "aud-1").headers["Location"] == "/app/"
    page = client.get("/app/audit").get_data(as_text=True)
    assert "Ledger chain verified" in page
    assert "patient-banner" not in page
