"""De-identification: what is removed, how dates move, and that re-identification restores."""

from __future__ import annotations

import json
from datetime import date, timedelta

from app.privacy.deidentify import Deidentifier, shift_days
from tests.discharge_builders import (
    ENCOUNTER_ID,
    IDENTIFYING,
    PATIENT_ID,
    condition,
    encounter,
    medication,
    patient,
)

SECRET = b"a-de-identification-secret-for-tests"


def deidentified(resources: list[dict], secret: bytes = SECRET, patient_id: str = PATIENT_ID):
    return Deidentifier(secret).deidentify(patient_id, resources)


def test_names_addresses_telecom_identifiers_and_narrative_are_gone():
    [cleaned], _ = deidentified([patient()])
    assert set(cleaned) == {"resourceType", "id", "gender", "birthDate"}
    assert cleaned["gender"] == "female"


def test_no_identifying_value_survives_anywhere_in_the_output():
    resources = [
        patient(),
        encounter(),
        medication(),
        condition("c1", "1", "x", "2026-01-01", note="Maria, 62704"),
    ]
    cleaned, _ = deidentified(resources)
    text = json.dumps(cleaned)
    assert [value for value in IDENTIFYING if value.lower() in text.lower()] == []


def test_every_date_of_a_patient_moves_by_the_same_offset_and_intervals_stay_true():
    cleaned, reidentifier = deidentified([patient(), encounter()])
    shift = reidentifier.shift
    assert 30 <= shift <= 365
    assert date.fromisoformat(cleaned[0]["birthDate"]) == date(1956, 3, 14) - timedelta(days=shift)
    period = cleaned[1]["period"]
    assert period["start"].endswith("T08:30:00Z") and period["end"].endswith("T11:00:00Z")
    stay = date.fromisoformat(period["end"][:10]) - date.fromisoformat(period["start"][:10])
    assert stay.days == 5


def test_the_shift_is_fixed_per_patient_and_secret_and_differs_between_patients():
    assert shift_days(SECRET, PATIENT_ID) == shift_days(SECRET, PATIENT_ID)
    shifts = {shift_days(SECRET, f"pat-{n}") for n in range(50)}
    assert len(shifts) > 25
    assert deidentified([encounter()])[0] == deidentified([encounter()])[0]
    assert deidentified([encounter()], secret=b"another-secret-entirely")[0] != deidentified([encounter()])[0]


def test_free_text_is_scrubbed_of_known_and_pattern_based_identifiers():
    note = (
        "Maria called from (555) 201-3344 and 312.555.0199 on 03/01/2026; wrote from x.y@mail.example; "
        "SSN 987-65-4321, MRN 00991234; Elena's visit of February 2, 2026. Stable."
    )
    cleaned, _ = deidentified([patient(), condition("c1", "1", "x", "2026-01-01", note=note)])
    text = cleaned[1]["note"][0]["text"]
    for value in (
        "Maria",
        "201-3344",
        "312.555.0199",
        "x.y@mail.example",
        "987-65-4321",
        "00991234",
        "Elena",
    ):
        assert value not in text
    assert "2026-03-01" not in text and "February 2, 2026" not in text
    assert text.endswith("Stable.")


def test_references_are_pseudonymised_and_their_displays_dropped():
    cleaned, reidentifier = deidentified([encounter(), medication()])
    assert cleaned[0]["subject"]["reference"].startswith("Patient/ref-")
    assert "display" not in cleaned[0]["subject"]
    assert reidentifier.original_reference(f"Encounter/{cleaned[0]['id']}") == f"Encounter/{ENCOUNTER_ID}"
    assert reidentifier.original_reference(cleaned[1]["subject"]["reference"]) == f"Patient/{PATIENT_ID}"
    assert reidentifier.original_reference("Condition/ref-999") is None


def test_reidentification_restores_names_identifiers_dates_and_references():
    resources = [patient(), condition("cond-1", "1", "x", "2026-02-01", note="Maria Garcia, MRN-4471829")]
    cleaned, reidentifier = deidentified(resources)
    note, onset, alias = cleaned[1]["note"][0]["text"], cleaned[1]["onsetDateTime"], cleaned[1]["id"]
    assert "Maria" not in note and onset != "2026-02-01"
    answer = f"{note} since {onset} (Condition/{alias})."
    assert reidentifier.restore(answer) == "Maria Garcia, MRN-4471829 since 2026-02-01 (Condition/cond-1)."


def test_the_input_is_not_modified():
    original = patient()
    deidentified([original])
    assert original == patient()
