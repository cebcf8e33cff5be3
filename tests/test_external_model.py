"""The hospital's own model over KServe v2: the endpoint section, the call, the card, the failures.

Every test runs against a real HTTP model server (``tests/model_server.py``) with the example
``endpoint:`` section of docs/EXTERNAL_MODELS.md, so the documented example is the tested one.
"""

from __future__ import annotations

import copy
import re
import socket
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
from pydantic import ValidationError
from ruamel.yaml import YAML

from app.engines.base import ModelUnavailable, PatientData
from app.engines.external import ExternalModel, ExternalModelEngine, ExternalModelFailed
from app.files.validated import InvalidFile, load_validated
from cds_hooks.advice import CardSource
from tests.builders import PATIENT_ID, condition
from tests.model_server import INPUTS, MODEL_NAME, KServeModelServer, readmission_risk

DOC = Path(__file__).parent.parent / "docs" / "EXTERNAL_MODELS.md"
EXAMPLE = YAML(typ="safe", pure=True).load(re.search(r"```yaml\n(.*?)```", DOC.read_text(), re.S)[1])
SNOMED = "http://snomed.info/sct"
NOW = datetime.now(UTC)
SOURCE = CardSource(
    "Hospital readmission-30d 3.0.0", "http://localhost/app/models/readmission-risk", "rr", "AI"
)
IDENTIFYING = (PATIENT_ID, "Okafor", "Adaeze", "MRN-4471", "enc-index", "Patient", "Encounter", "birthDate")


@pytest.fixture
def server():
    with KServeModelServer() as running:
        yield running


def endpoint(url: str = "http://127.0.0.1:9", **changes: object) -> dict:
    return copy.deepcopy(EXAMPLE["endpoint"]) | {"url": url} | changes


def engine(url: str, **changes: object) -> ExternalModelEngine:
    return ExternalModelEngine(
        ExternalModel.model_validate(endpoint(url, **changes)), SOURCE, clock=lambda: NOW
    )


def chart(*, age: int = 70, stay_days: int = 8, ed_visits: int = 2, conditions: int = 4) -> PatientData:
    """A discharge: an identifiable patient, the index stay, recent and old ED visits, active and
    refuted conditions. Born on 1 January, so the age is exact whatever the date."""
    patient = {
        "resourceType": "Patient",
        "id": PATIENT_ID,
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "MRN-4471"}],
        "name": [{"family": "Okafor", "given": ["Adaeze"]}],
        "birthDate": f"{NOW.year - age}-01-01",
    }
    stay = _encounter("enc-index", "IMP", NOW - timedelta(days=stay_days), ended=False)
    visits = [_encounter(f"ed-{i}", "EMER", NOW - timedelta(days=30 * (i + 1))) for i in range(ed_visits)]
    old_visit = _encounter("ed-old", "EMER", NOW - timedelta(days=300))
    active = [condition(f"cond-{i}", SNOMED, "44054006") for i in range(conditions)]
    refuted = condition("cond-refuted", SNOMED, "13645005", verification="refuted")
    resources = (patient, stay, *visits, old_visit, *active, refuted)
    return PatientData("encounter-discharge", PATIENT_ID, resources, encounter_id="Encounter/enc-index")


def _encounter(encounter_id: str, klass: str, start: datetime, *, ended: bool = True) -> dict:
    period = {"start": start.isoformat()} | (
        {"end": (start + timedelta(hours=4)).isoformat()} if ended else {}
    )
    return {
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": "finished" if ended else "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": klass},
        "subject": {"reference": f"Patient/{PATIENT_ID}"},
        "period": period,
    }


def failure(engine_: ExternalModelEngine, data: PatientData | None = None) -> str:
    """The reason, which is also the message the serving core records for any unavailable model."""
    with pytest.raises(ModelUnavailable) as caught:
        engine_.suggest(data or chart())
    assert isinstance(caught.value, ExternalModelFailed)
    assert str(caught.value) == caught.value.reason
    assert PATIENT_ID not in caught.value.reason
    return caught.value.reason


# --- the endpoint section ------------------------------------------------------------------------


def test_the_documented_example_is_a_valid_endpoint_and_matches_the_test_model():
    spec = ExternalModel.model_validate(EXAMPLE["endpoint"])
    assert spec.infer_url == "https://models.hospital.example/v2/models/readmission-30d/versions/3/infer"
    assert {tensor.name: tensor.datatype for tensor in spec.inputs} == INPUTS
    assert spec.model_name == MODEL_NAME


def _edited(change) -> dict:
    edited = endpoint()
    change(edited)
    return edited


def _set(path: str, value: object):
    def change(edited: dict) -> None:
        *parents, last = path.split(".")
        target = edited
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        target[last] = value

    return change


INVALID = [
    (lambda e: e.pop("deadline_seconds"), "deadline_seconds", "Field required"),
    (_set("deadline_seconds", 0), "deadline_seconds", "greater than 0"),
    (_set("deadline_seconds", 60), "deadline_seconds", "less than or equal to 30"),
    (_set("timeout", 3), "timeout", "Extra inputs are not permitted"),
    (_set("url", "ftp://models.hospital.example"), "url", "http or https"),
    (_set("url", "https://user:secret@models.hospital.example"), "url", "no credentials"),
    (_set("model_name", "../admin"), "model_name", "should match pattern"),
    (_set("inputs.0.datatype", "BYTES"), "inputs.0.datatype", "'FP32', 'FP64', 'INT32', 'INT64' or 'BOOL'"),
    (_set("inputs.0.fhirpath", "birthDate )"), "inputs.0.fhirpath", "not a valid FHIRPath"),
    (_set("inputs.0.fhirpath", "noSuchFunction()"), "inputs.0.fhirpath", "not a valid FHIRPath"),
    (_set("inputs.0.fhirpath", "identifier.value.toInteger()"), "inputs.0.fhirpath", "no text may become"),
    (_set("inputs.0.fhirpath", "name.given.`length`()"), "inputs.0.fhirpath", "no text may become"),
    (_set("inputs.0.missing", True), "inputs.0.missing", "FP32 value or 'refuse'"),
    (_set("inputs.2.missing", 0), "inputs.2.missing", "not used with transform count"),
    (_set("inputs.0.name", "score"), "inputs.0.name", "reserved"),
    (_set("inputs.1.name", "age"), "inputs", "declared twice"),
    (lambda e: [e["prefetch"].pop(key) for key in ("encounter", "encounters")], "inputs", "prefetch none"),
    (_set("card.indicators.1.at_least", 0.9), "card.indicators", "from the highest at_least down"),
    (_set("card.indicators.0.indicator", "info"), "card.indicators", "more severe"),
    (_set("card.indicators.0.indicator", "urgent"), "card.indicators.0.indicator", "'info', 'warning'"),
    (_set("card.confidence", 1.5), "card.confidence", "between 0 and 1"),
    (_set("card.confidence", "high"), "card.confidence", "or 'score'"),
    (
        lambda e: e["card"].update(confidence="score", indicators=[{"at_least": 7, "indicator": "warning"}]),
        "card.confidence",
        "probability",
    ),
    (_set("card.summary", "Risk {mrn}"), "card", "summary: unknown field {mrn}"),
    (_set("card.summary", "Risk {score.__class__}"), "card", "unknown field"),
    (_set("card.detail", "Risk {score!r}"), "card", "detail: field {score}"),
    (_set("card.detail", "Risk {score:>999999999}"), "card", "detail: field {score}"),
    (_set("card.detail", "Age {age:d}"), "card", "detail: field {age}"),
    (
        _set("card.suggestion.resource.subject", {"reference": "{{mrn}}"}),
        "card.suggestion.resource",
        "{{mrn}}",
    ),
    (_set("card.suggestion.resource", {"status": "draft"}), "card.suggestion.resource", "resourceType"),
]


@pytest.mark.parametrize(("change", "field", "message"), INVALID)
def test_an_invalid_endpoint_section_is_refused_naming_the_field(change, field, message):
    with pytest.raises(ValidationError) as caught:
        ExternalModel.model_validate(_edited(change))
    problem = caught.value.errors()[0]
    assert ".".join(str(part) for part in problem["loc"]) == field
    assert message is None or message in problem["msg"]


def test_a_card_file_without_a_deadline_stops_loading_with_the_field_named(tmp_path):
    broken = endpoint()
    del broken["deadline_seconds"]
    path = tmp_path / "endpoint.yaml"
    YAML(typ="safe", pure=True).dump(broken, path)
    with pytest.raises(InvalidFile, match=r"^endpoint.yaml: deadline_seconds: Field required$"):
        load_validated(path, ExternalModel)


def test_the_first_threshold_reached_gives_the_indicator():
    card = ExternalModel.model_validate(endpoint()).card
    assert [card.indicator_for(score) for score in (0.95, 0.7, 0.6999, 0.4, 0.3999)] == [
        "critical",
        "critical",
        "warning",
        "warning",
        None,
    ]


# --- known scores, known cards --------------------------------------------------------------------


def test_a_known_score_gives_the_card_its_thresholds_and_templates_say(server):
    advice_set = engine(server.url).suggest(chart(age=70, stay_days=8, ed_visits=2, conditions=4))
    expected = readmission_risk(70, 8, 2, 4)
    assert expected == pytest.approx(0.5498, abs=1e-4)
    [advice] = advice_set.advice
    assert advice.indicator == "warning"
    assert advice.summary == "30-day readmission risk 55%"
    assert "from age 70, a stay of 8 days, 2 emergency visits in the previous 6 months and 4 active" in (
        advice.rationale
    )
    assert advice.confidence == 0.8
    assert advice.rule_id == "readmission-30d-high"
    assert advice.source == SOURCE
    record = advice.extra["externalModel"]
    assert record["score"] == expected
    assert record["inputs"] == {"age": 70.0, "stay_days": 8.0, "ed_visits": 2, "conditions": 4}
    assert record["requestId"] == server.last_request["id"]
    assert (record["model"], record["version"], record["defaulted"]) == ("readmission-30d", "3", [])


def test_the_card_cites_each_input_it_rests_on(server):
    advice_set = engine(server.url).suggest(chart())
    evidence = {item.reference: item.description for item in advice_set.advice[0].evidence}
    assert evidence == {
        f"Patient/{PATIENT_ID}": "age in years (90 for 90 and over): 70",
        "Encounter/enc-index": "length of stay in days: 8",
        "Encounter/ed-0": "counted in emergency visits in the previous 6 months",
        "Encounter/ed-1": "counted in emergency visits in the previous 6 months",
        **{f"Condition/cond-{i}": "counted in active conditions" for i in range(4)},
    }
    assert advice_set.inputs_used == tuple(sorted(evidence))


def test_the_suggested_resource_has_the_patient_and_encounter_filled_in(server):
    [suggestion] = engine(server.url).suggest(chart()).advice[0].suggestions
    assert (suggestion.label, suggestion.recommended) == ("Book follow-up within 7 days", True)
    [action] = suggestion.actions
    assert (action.type, action.description) == (
        "create",
        "Request a follow-up visit within 7 days of discharge",
    )
    assert action.resource["resourceType"] == "ServiceRequest"
    assert action.resource["subject"] == {"reference": f"Patient/{PATIENT_ID}"}
    assert action.resource["encounter"] == {"reference": "Encounter/enc-index"}
    assert "{{" not in str(action.resource)


def test_ages_over_90_are_sent_as_90_and_a_higher_score_gives_a_critical_card(server):
    [advice] = engine(server.url).suggest(chart(age=97)).advice
    ages = [tensor["data"] for tensor in server.last_request["inputs"] if tensor["name"] == "age"]
    assert ages == [[90.0]]
    assert advice.extra["externalModel"]["score"] == readmission_risk(90, 8, 2, 4)
    assert advice.indicator == "critical"
    assert advice.summary == "30-day readmission risk 73%"


def test_below_the_lowest_threshold_there_is_no_card_but_the_inputs_are_recorded(server):
    advice_set = engine(server.url).suggest(chart(age=40, stay_days=2, ed_visits=0, conditions=1))
    assert readmission_risk(40, 2, 0, 1) < 0.4
    assert advice_set.advice == ()
    assert advice_set.inputs_used == ("Condition/cond-0", "Encounter/enc-index", f"Patient/{PATIENT_ID}")
    assert server.request_count == 1


def test_a_calibrated_score_can_be_the_confidence(server):
    card = endpoint()["card"] | {"confidence": "score"}
    [advice] = engine(server.url, card=card).suggest(chart()).advice
    assert advice.confidence == readmission_risk(70, 8, 2, 4)


def test_a_model_without_a_version_is_called_at_its_unversioned_path(server):
    [advice] = engine(server.url, model_version=None).suggest(chart()).advice
    assert advice.extra["externalModel"]["version"] is None
    assert server.request_count == 1


def test_an_absent_input_takes_its_default_and_is_recorded_as_defaulted(server):
    inputs = endpoint()["inputs"]
    inputs[1]["missing"] = 8.0
    data = chart()
    resources = data.resources[:1] + data.resources[2:]
    without_encounter = PatientData(data.hook, data.patient_id, resources, encounter_id=data.encounter_id)
    [advice] = engine(server.url, inputs=inputs).suggest(without_encounter).advice
    assert advice.extra["externalModel"]["defaulted"] == ["stay_days"]
    assert advice.extra["externalModel"]["score"] == readmission_risk(70, 8, 2, 4)


# --- what leaves Countersign ----------------------------------------------------------------------


def test_only_numbers_and_a_random_request_id_leave_countersign(server):
    model = engine(server.url)
    model.suggest(chart())
    model.suggest(chart())
    first, second = server.requests
    assert set(first) == {"id", "inputs"}
    assert uuid.UUID(first["id"]).version == 4
    assert first["id"] != second["id"]
    for tensor in first["inputs"]:
        assert set(tensor) == {"name", "shape", "datatype", "data"}
        assert tensor["shape"] == [1]
        assert all(isinstance(value, int | float) for value in tensor["data"])
    sent = b"".join(server.raw_requests).decode() + str(server.headers)
    birth_year = str(NOW.year - 70)
    for identifying in (*IDENTIFYING, birth_year):
        assert identifying not in sent


# --- failures -------------------------------------------------------------------------------------


def test_a_slow_server_times_out_within_the_deadline(server):
    server.mode = "slow"
    slow = engine(server.url, deadline_seconds=0.5)
    started = time.monotonic()
    assert failure(slow) == "timeout after 0.5 s"
    assert time.monotonic() - started < 0.9


def test_a_server_that_trickles_its_answer_cannot_hold_the_call_past_the_deadline(server):
    server.mode = "trickle"
    started = time.monotonic()
    assert failure(engine(server.url, deadline_seconds=0.5)) == "timeout after 0.5 s"
    assert time.monotonic() - started < 0.9


def test_a_redirect_is_not_followed(server):
    server.mode = "redirect"
    assert failure(engine(server.url)) == "http error 307"
    assert server.request_count == 1


def test_a_refused_connection_is_unavailable():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert failure(engine(f"http://127.0.0.1:{port}")) == "unavailable (ConnectionError)"


def test_an_http_error_is_a_failure(server):
    server.mode = "error-500"
    assert failure(engine(server.url)) == "http error 500"


def test_a_request_the_model_does_not_accept_is_a_failure(server):
    inputs = endpoint()["inputs"]
    inputs[0]["datatype"] = "FP64"
    assert failure(engine(server.url, inputs=inputs)) == "http error 400"


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("not-json", "malformed answer: not a v2 inference response"),
        ("wrong-shape", "malformed answer: output 'risk' does not match its shape"),
        ("missing-output", "malformed answer: output 'risk' missing"),
        ("nan", "malformed answer: the score is not a finite number"),
        ("wrong-id", "malformed answer: the id of another request"),
    ],
)
def test_a_malformed_answer_is_a_failure_not_a_guess(server, mode, reason):
    server.mode = mode
    assert failure(engine(server.url)) == reason


def test_a_score_outside_0_1_cannot_be_a_confidence(server):
    server.mode = "not-a-probability"
    card = endpoint()["card"] | {"confidence": "score"}
    assert failure(engine(server.url, card=card)) == "malformed answer: the score is not a probability"


def test_the_breaker_opens_after_repeated_failures_and_refuses_at_once(server):
    server.mode = "error-500"
    model = engine(server.url, breaker={"failures": 2, "reset_seconds": 0.2})
    assert [failure(model), failure(model)] == ["http error 500", "http error 500"]
    started = time.monotonic()
    assert failure(model) == "circuit open"
    assert time.monotonic() - started < 0.05
    assert server.request_count == 2
    time.sleep(0.25)
    server.mode = "normal"
    assert len(model.suggest(chart()).advice) == 1
    assert model.client.breaker.state == "closed"


def test_a_required_input_missing_refuses_without_calling_the_model(server):
    data = chart()
    patient = {key: value for key, value in data.patient.items() if key != "birthDate"}
    without_birth_date = PatientData(
        data.hook, data.patient_id, (patient, *data.resources[1:]), encounter_id="enc-index"
    )
    assert failure(engine(server.url), without_birth_date) == "input 'age' missing"
    assert server.request_count == 0


def test_a_value_that_does_not_fit_its_datatype_refuses_without_calling_the_model(server):
    inputs = endpoint()["inputs"]
    inputs[3] = {"name": "conditions", "about": "Encounter", "fhirpath": "status", "datatype": "INT32"}
    assert failure(engine(server.url, inputs=inputs)) == "input 'conditions': does not fit INT32"
    assert server.request_count == 0


def test_the_test_model_server_speaks_v2_metadata_and_health(server):
    assert requests.get(f"{server.url}/v2/health/ready", timeout=5).json() == {"ready": True}
    metadata = requests.get(f"{server.url}/v2/models/{MODEL_NAME}/versions/3", timeout=5).json()
    assert {tensor["name"]: tensor["datatype"] for tensor in metadata["inputs"]} == INPUTS
    assert requests.get(f"{server.url}/v2/models/other", timeout=5).status_code == 404
