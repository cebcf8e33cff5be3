"""The real HAPI FHIR JPA server (sandbox/fhir_servers/hapi/): what it refuses and accepts, as the EHR's
server would."""

from __future__ import annotations

import copy
import uuid

import pytest
import requests

from fhir_profiles.audit_events import hook_call_audit_event
from fhir_profiles.common import PROFILE_CDS_CALL_AUDIT
from fhir_profiles.profiles import structure_definitions
from tests.test_fhir_profiles import FACTS, local_profile_examples

pytestmark = pytest.mark.hapi

FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
# The least each referenced type needs to be valid R4 when a test puts it on the server.
MINIMAL = {"GuidanceResponse": {"status": "success", "moduleUri": "urn:countersign:test"}}


def post(url: str, body: dict, headers: dict[str, str] | None = None, **params: str) -> requests.Response:
    return requests.post(url, json=body, headers={**FHIR_JSON, **(headers or {})}, params=params, timeout=60)


def errors(response: requests.Response) -> list[str]:
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return [i.get("diagnostics", "") for i in outcome["issue"] if i["severity"] in ("error", "fatal")]


def references(value: object) -> set[str]:
    """Every literal relative reference (Type/id) inside a resource."""
    if isinstance(value, dict):
        found = {value["reference"]} if isinstance(value.get("reference"), str) else set()
        return found.union(*(references(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(references(v) for v in value))
    return set()


def put_targets(base: str, resource: dict) -> None:
    """Puts a minimal resource at every reference of ``resource``: HAPI refuses dangling ones."""
    for reference in sorted(references(resource)):
        kind, _, id_ = reference.partition("/")
        body = {"resourceType": kind, "id": id_, **MINIMAL.get(kind, {})}
        response = requests.put(f"{base}/{reference}", json=body, headers=FHIR_JSON, timeout=60)
        assert response.status_code in (200, 201), response.text


def conformant_examples() -> dict[str, dict]:
    """One resource per local profile, by the profile's URL."""
    return {resource["meta"]["profile"][0]: resource for resource in local_profile_examples()}


def test_metadata_is_fhir_r4(hapi_server: str):
    statement = requests.get(f"{hapi_server}/metadata", headers=FHIR_JSON, timeout=60).json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"


def test_transaction_with_a_dangling_reference_is_refused_whole(hapi_server: str):
    marker = {"system": "urn:countersign:test", "value": str(uuid.uuid4())}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {"resourceType": "Patient", "identifier": [marker]},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": {
                    "resourceType": "Provenance",
                    "target": [{"reference": "Patient/does-not-exist"}],
                    "recorded": "2026-11-23T10:05:31Z",
                    "agent": [{"who": {"display": "Countersign"}}],
                },
                "request": {"method": "POST", "url": "Provenance"},
            },
        ],
    }
    response = post(hapi_server, bundle)
    assert 400 <= response.status_code < 500
    assert any("Patient/does-not-exist" in e for e in errors(response))
    found = requests.get(
        f"{hapi_server}/Patient", params={"identifier": f"{marker['system']}|{marker['value']}"}, timeout=60
    ).json()
    assert found["total"] == 0  # nothing of the Bundle was written


def test_task_breaking_inv_1_is_refused(hapi_server: str):
    task = {
        "resourceType": "Task",
        "status": "rejected",
        "intent": "proposal",
        "authoredOn": "2026-11-23T10:05:31Z",
        "lastModified": "2026-11-23T09:00:00Z",
    }
    response = post(f"{hapi_server}/Task", task)
    assert response.status_code == 422
    assert any("inv-1" in e for e in errors(response))


def test_audit_event_is_held_to_the_profile_it_claims(hapi_server: str):
    event = hook_call_audit_event(FACTS, "GuidanceResponse/g")
    assert event["meta"]["profile"] == [PROFILE_CDS_CALL_AUDIT]
    put_targets(hapi_server, event)

    broken = copy.deepcopy(event)
    broken["action"] = "R"  # the profile fixes E
    broken["entity"] = broken["entity"][:1]  # the profile wants at least 2
    refused = post(f"{hapi_server}/AuditEvent", broken)
    assert refused.status_code == 422
    problems = errors(refused)
    assert any(PROFILE_CDS_CALL_AUDIT in e and "minimum required = 2" in e for e in problems)
    assert any("fixed to 'E'" in e for e in problems)

    accepted = post(f"{hapi_server}/AuditEvent", event)
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["meta"]["profile"] == [PROFILE_CDS_CALL_AUDIT]


def test_profiles_that_are_not_loaded_only_warn(hapi_server: str):
    device = {
        "resourceType": "Device",
        "meta": {"profile": ["http://hl7.org/fhir/uv/aitransparency/StructureDefinition/AI-Device"]},
    }
    response = post(f"{hapi_server}/Device", device, {"Prefer": "return=OperationOutcome"})
    assert response.status_code == 201, response.text
    warnings = [i["diagnostics"] for i in response.json()["issue"] if i["severity"] == "warning"]
    assert any("AI-Device" in w and "could not be found" in w for w in warnings)


def test_conditional_create_twice_makes_one_resource(hapi_server: str):
    identifier = {"system": "urn:countersign:test", "value": str(uuid.uuid4())}
    query = f"identifier={identifier['system']}|{identifier['value']}"
    task = {"resourceType": "Task", "status": "draft", "intent": "proposal", "identifier": [identifier]}
    first = post(f"{hapi_server}/Task", task, {"If-None-Exist": query})
    second = post(f"{hapi_server}/Task", task, {"If-None-Exist": query})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.headers["Location"] == second.headers["Location"]
    found = requests.get(f"{hapi_server}/Task?{query}", timeout=60).json()
    assert found["total"] == 1


def test_transaction_resolves_urn_uuids_and_the_searches_find_them(hapi_server: str):
    patient_url, marker = f"urn:uuid:{uuid.uuid4()}", str(uuid.uuid4())
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": patient_url,
                "resource": {"resourceType": "Patient", "identifier": [{"system": "urn:t", "value": marker}]},
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": f"identifier=urn:t|{marker}"},
            },
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",  # the validator wants one on every entry
                "resource": {
                    "resourceType": "Provenance",
                    "target": [{"reference": patient_url}],
                    "recorded": "2026-11-23T10:05:31Z",
                    "agent": [{"who": {"display": "Countersign"}}],
                },
                "request": {"method": "POST", "url": "Provenance"},
            },
        ],
    }
    responses = [post(hapi_server, bundle), post(hapi_server, bundle)]
    assert [r.status_code for r in responses] == [200, 200], responses[0].text
    first, again = (r.json() for r in responses)
    statuses = [[e["response"]["status"] for e in b["entry"]] for b in (first, again)]
    assert statuses == [["201 Created", "201 Created"], ["200 OK", "201 Created"]]
    patient = first["entry"][0]["response"]["location"].split("/_history")[0]
    assert again["entry"][0]["response"]["location"].startswith(f"{patient}/_history/")

    provenances = requests.get(f"{hapi_server}/Provenance", params={"target": patient}, timeout=60).json()
    assert provenances["total"] == 2
    with_revinclude = requests.get(
        f"{hapi_server}/Patient",
        params={"_id": patient.split("/")[1], "_revinclude": "Provenance:target"},
        timeout=60,
    ).json()
    assert sorted(e["resource"]["resourceType"] for e in with_revinclude["entry"]) == [
        "Patient",
        "Provenance",
        "Provenance",
    ]


@pytest.mark.parametrize("url", sorted(structure_definitions()))
def test_each_local_profile_is_loaded_and_a_conformant_example_passes(hapi_server: str, url: str):
    definition = structure_definitions()[url]
    checked = post(f"{hapi_server}/StructureDefinition/$validate", definition)
    assert checked.status_code == 200 and errors(checked) == []

    example = conformant_examples().get(url)
    assert example is not None, f"no builder makes a resource claiming {url}"
    validated = post(f"{hapi_server}/{definition['type']}/$validate", example, profile=url)
    assert validated.status_code == 200 and errors(validated) == [], validated.text
