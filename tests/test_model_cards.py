"""Model cards: all 31 HTI-1 source attributes, served as JSON and HTML, accepted as FHIR."""

from __future__ import annotations

import pytest
import requests

from app.db import utcnow
from app.files.validated import InvalidFile, load_validated
from app.governance.model_card import CARDS_DIRECTORY, ModelCard, load_model_cards
from app.governance.model_card_text import model_card_markdown
from fhir_profiles.device import ai_device
from fhir_profiles.model_card import model_card_document
from tests.governance_helpers import change
from tests.yaml_files import edited_copy


def test_every_card_in_the_repository_states_all_31_attributes():
    cards = load_model_cards()
    assert cards
    for card in cards:
        assert len(card.source_attributes.model_dump()) == 31
        assert all(text.strip() for text in card.source_attributes.model_dump().values())


def test_a_card_missing_an_attribute_does_not_load_and_names_it(tmp_path):
    source = next(CARDS_DIRECTORY.glob("*.yaml"))
    broken = edited_copy(
        source, tmp_path / source.name, lambda card: card["source_attributes"].pop("external_validator")
    )
    with pytest.raises(InvalidFile, match=r"source_attributes\.external_validator"):
        load_validated(broken, ModelCard)


def test_a_card_with_a_broken_fhirpath_applicability_does_not_load_and_names_it(tmp_path):
    def break_fhirpath(card: dict) -> None:
        card["policy"]["applicability"][0]["fhirpath"] = "birthDate <= today( - 18 years"

    source = CARDS_DIRECTORY / "medication-safety-1.0.0.yaml"
    broken = edited_copy(source, tmp_path / source.name, break_fhirpath)
    with pytest.raises(InvalidFile, match=r"policy\.applicability\.0: .*fhirpath"):
        load_validated(broken, ModelCard)


def test_the_api_lists_models_and_shows_one_with_attributes_and_history(app, client):
    listed = client.get("/api/models").get_json()["models"]
    assert sorted((m["id"], m["version"], m["status"]) for m in listed) == [
        ("discharge-summary-draft", "1.0.0", "active"),
        ("medication-safety", "1.0.0", "active"),
        ("medication-safety", "1.1.0", "paused"),
        ("problem-list-gaps", "1.0.0", "active"),
        ("readmission-risk", "1.0.0", "active"),
    ]
    change(app, "pause", reason="Review")
    detail = client.get("/api/models/medication-safety").get_json()
    assert detail["status"] == "paused"
    assert len(detail["sourceAttributes"]) == 31
    assert detail["sourceAttributes"][0]["hti1"] == "(B)(1)(i)"
    assert [(h["from"], h["to"], h["approver"]) for h in detail["history"]] == [
        ("active", "paused", "Practitioner/cmio-1")
    ]
    assert client.get("/api/models/nope").status_code == 404


def test_the_model_card_page_shows_every_attribute(client):
    page = client.get("/app/models/medication-safety").get_data(as_text=True)
    assert page.count("<tr><td>(B)(") == 31
    assert "Intended decision-making role" in page


@pytest.mark.integration
def test_the_ai_device_and_model_card_are_accepted_by_the_fhir_server(fhir_server):
    card = load_model_cards().card("medication-safety", "1.0.0")
    key = f"{card.id}-{card.version}"
    device = ai_device(key, card.name, card.version, "http://localhost/app/models/medication-safety")
    identifier = device["identifier"][0]
    headers = {
        "Content-Type": "application/fhir+json",
        "If-None-Exist": f"identifier={identifier['system']}|{key}",
    }
    created = requests.post(f"{fhir_server}/Device", json=device, headers=headers, timeout=10)
    assert created.status_code in (200, 201), created.text
    document = model_card_document(key, model_card_markdown(card), f"Device/{created.json()['id']}", utcnow())
    stored = requests.post(
        f"{fhir_server}/DocumentReference",
        json=document,
        headers={"Content-Type": "application/fhir+json"},
        timeout=10,
    )
    assert stored.status_code == 201, stored.text
    assert stored.json()["type"]["coding"][0]["code"] == "AIModelCard"
