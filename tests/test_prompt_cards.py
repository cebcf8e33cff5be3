"""Prompt cards: schema, immutable versions (content hash), and the AI-InputPrompt DocumentReference."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from app.cli import main
from app.files.validated import InvalidFile
from app.llm.prompt_card import PROMPTS_DIRECTORY, load_prompt_cards, prompt_document
from tests.yaml_files import edited_copy

AI_INPUTS = "http://hl7.org/fhir/uv/aitransparency/CodeSystem/AIinputsCS"
PROFILE = "http://hl7.org/fhir/uv/aitransparency/StructureDefinition/AI-InputPrompt"
SOURCE = PROMPTS_DIRECTORY / "discharge-summary-v1.yaml"


def _copy(tmp_path: Path, change) -> Path:
    edited_copy(SOURCE, tmp_path / SOURCE.name, change)
    return tmp_path


def test_the_discharge_summary_prompt_card_loads_with_its_failure_modes():
    card = load_prompt_cards()["discharge-summary"]
    assert card.key == "discharge-summary-prompt@1"
    assert card.model_id == "discharge-summary-draft"
    assert card.indications and card.contraindications
    assert any("Confabulation" in mode.name for mode in card.failure_modes)
    messages = card.messages('[{"resourceType": "Encounter"}]')
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[1]["content"].endswith('[{"resourceType": "Encounter"}]\n')


def test_a_changed_template_with_the_same_version_does_not_load_and_names_the_hash(tmp_path):
    def edit(content: dict) -> None:
        content["template"]["system"] += "Also suggest a diagnosis if one seems missing.\n"

    with pytest.raises(InvalidFile, match=r"discharge-summary-v1\.yaml: content_sha256: .*new version"):
        load_prompt_cards(_copy(tmp_path, edit))


def test_a_new_version_without_a_new_hash_does_not_load_either(tmp_path):
    def bump(content: dict) -> None:
        content["version"] = 2

    with pytest.raises(InvalidFile, match="content_sha256"):
        load_prompt_cards(_copy(tmp_path, bump))


def test_documentation_fields_may_be_improved_without_a_new_version(tmp_path):
    def clarify(content: dict) -> None:
        content["indications"] += " Clarified wording."

    assert load_prompt_cards(_copy(tmp_path, clarify))["discharge-summary"].version == 1


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("failure_modes", lambda c: c.update(failure_modes=[])),
        ("contraindications", lambda c: c.pop("contraindications")),
        ("template.user", lambda c: c["template"].update(user="No placeholder here")),
        ("status", lambda c: c.update(status="draft")),
    ],
)
def test_an_invalid_card_does_not_load_and_names_the_field(tmp_path, field, change):
    with pytest.raises(InvalidFile, match=re.escape(f"{SOURCE.name}: {field}:")):
        load_prompt_cards(_copy(tmp_path, change))


def test_an_invalid_prompt_card_stops_the_app_at_start(tmp_path, make_app, monkeypatch):
    monkeypatch.setattr("app.llm.prompt_card.PROMPTS_DIRECTORY", _copy(tmp_path, lambda c: c.pop("template")))
    with pytest.raises(InvalidFile, match="template"):
        make_app()


def test_the_prompt_document_has_the_exact_profile_values_of_the_reference():
    card = load_prompt_cards()["discharge-summary"]
    document = prompt_document(card)
    assert document["meta"] == {"profile": [PROFILE]}
    assert document["type"] == {"coding": [{"system": AI_INPUTS, "code": "AIInputPrompt"}]}
    assert document["status"] == "current"
    assert document["identifier"][0]["value"] == "discharge-summary-prompt@1"
    assert document["identifier"][1]["value"] == card.content_sha256
    attachment = document["content"][0]["attachment"]
    assert attachment["contentType"] == "text/markdown"
    assert card.template.system.strip() in base64.b64decode(attachment["data"]).decode()
    assert "NOT stored here" in document["description"]


@pytest.mark.integration
def test_the_fhir_server_accepts_the_prompt_document(fhir_server):
    document = prompt_document(load_prompt_cards()["discharge-summary"])
    stored = requests.put(
        f"{fhir_server}/DocumentReference/{document['id']}",
        json=document,
        headers={"Content-Type": "application/fhir+json"},
        timeout=10,
    )
    assert stored.status_code in (200, 201), stored.text
    read = requests.get(f"{fhir_server}/DocumentReference/{document['id']}", timeout=10).json()
    assert read["type"]["coding"] == [{"system": AI_INPUTS, "code": "AIInputPrompt"}]
    assert read["content"][0]["attachment"]["data"] == document["content"][0]["attachment"]["data"]


def test_the_prompt_hash_command_prints_the_hash_a_new_version_needs(tmp_path):
    runner = CliRunner()
    current = runner.invoke(main, ["prompt", "hash", str(SOURCE)])
    assert current.exit_code == 0
    assert current.output.strip() == load_prompt_cards()["discharge-summary"].content_sha256

    def new_version(content: dict) -> None:
        content["version"] = 2
        content["template"]["user"] = "Summarise:\n${resources}\n"

    edited = _copy(tmp_path, new_version) / SOURCE.name
    result = runner.invoke(main, ["prompt", "hash", str(edited)])
    assert result.exit_code == 1
    needed = result.stdout.strip()
    assert needed != current.output.strip()
    edited_copy(edited, edited, lambda card: card.update(content_sha256=needed))
    assert load_prompt_cards(tmp_path)["discharge-summary"].version == 2
