"""The whole check, in order: load, run the journey, wait, look, (clean up), and the rows that say
how each step went. Progress goes to stderr, so that ``--json`` keeps stdout to the report."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import click
import requests

from app.audit.outbox import DEAD, DELIVERED, PENDING
from app.settings import WriteBackServer
from sandbox.ehr.card_store import CardStore
from sandbox.ehr.cds_client import CdsClient
from sandbox.ehr.fhir_store import FhirStore
from sandbox.ehr.synthetic.cohort import CLINICIAN, SyntheticPatient, shared_resources
from sandbox.ehr.synthetic.loader import LoadError, load_cohort
from sandbox.ehr.synthetic.resources import SYNTHETIC_TAG
from sandbox.ehr.workflow import SandboxEhr
from sandbox.integration_check.cleanup import delete_all, references_to_delete
from sandbox.integration_check.client import FhirClient
from sandbox.integration_check.credentials import CHECK_SCOPE, bearer_of, fhir_session
from sandbox.integration_check.expected import Expected, expected_resources
from sandbox.integration_check.hints import outcome_hint
from sandbox.integration_check.journey import STORIES, Journey, Step
from sandbox.integration_check.report import Report, Row
from sandbox.integration_check.searches import About, CmioSearches
from sandbox.integration_check.service import RunningCountersign, running_countersign
from sandbox.integration_check.validation import Validator
from sandbox.integration_check.waiting import Message, wait_for_write_back

TYPE_ORDER = ("Device", "RequestGroup", "GuidanceResponse", "Provenance", "AuditEvent", "Task")
HTEST = f"{SYNTHETIC_TAG['system']}|{SYNTHETIC_TAG['code']}"


@dataclass(frozen=True)
class CheckOptions:
    #: the write-back entry, exactly as Countersign will use it (its scope is the write-back's)
    server: WriteBackServer
    timeout: float = 120.0
    cleanup: bool = False
    #: Backend Services scope of the check's own requests (load, EHR, CMIO searches, cleanup)
    check_scope: str = CHECK_SCOPE


def run_check(options: CheckOptions) -> Report:
    """Run the check against ``options.server``; the report says what passed (stdout untouched)."""
    run = f"ic{uuid.uuid4().hex[:10]}"
    suffix = f"-{run}"
    url = options.server.key
    report = Report(url, run)
    session = fhir_session(options.server, options.check_scope)
    client = FhirClient(url, session)
    patients = {story: f"{story}{suffix}" for story in sorted(STORIES)}
    known: list[dict] = shared_resources(suffix)
    _say(f"[1/5] loading {len(patients)} HTEST-tagged test patients (ids ending {suffix}) into {url}")
    try:
        loaded = _load(report, client, session, suffix, patients)
        known += [resource for patient in loaded for resource in patient.resources]
        if loaded:
            known += _journey(report, options, client, session, patients, suffix)
    finally:
        if options.cleanup:
            _say("[5/5] deleting the test patients and everything written about them")
            report.rows += _cleanup(client, list(patients.values()), known)
        else:
            _say(f"[5/5] the test data stays on the server (ids ending {suffix}); --cleanup deletes it")
    return report


def _load(
    report: Report, client: FhirClient, session: requests.Session, suffix: str, patients: dict[str, str]
) -> list[SyntheticPatient]:
    """Load the run's patients (and its own practitioners); none loaded ends the check there."""
    step, check = "load", "test patients written (transaction Bundles)"
    try:
        loaded = load_cohort(
            client.base_url, suffix=suffix, only=set(patients), own_staff=True, session=session
        )
    except LoadError as error:
        hint = outcome_hint(
            error.status, error.outcome, " to write Patient and its records (see --check-scope)"
        )
        report.rows.append(Row.failed(step, check, hint, len(patients)))
        return []
    except requests.RequestException as error:
        report.rows.append(Row.failed(step, check, f"unreachable ({type(error).__name__})", len(patients)))
        return []
    report.rows.append(Row.judge(step, check, len(patients), len(loaded), "a patient was not written"))
    tagged = client.search("Patient", {"_tag": HTEST, "_id": ",".join(patients.values())})
    hint = "" if tagged.refusal is None else outcome_hint(tagged.refusal.status, tagged.refusal.outcome)
    found = len(tagged.resources)
    row = Row.judge(step, "Patient?_tag=HTEST finds them", len(patients), found, hint, broken=bool(hint))
    report.rows.append(row)
    return loaded


def _journey(
    report: Report,
    options: CheckOptions,
    client: FhirClient,
    session: requests.Session,
    patients: dict[str, str],
    suffix: str,
) -> list[dict]:
    """Run Countersign and the EHR's journey; returns the write-back resources found."""
    with running_countersign(options.server) as countersign:
        _say(f"[2/5] Countersign on {countersign.url}; the EHR calls every hook and decides on cards")
        ehr = _ehr(countersign, client, session, f"{CLINICIAN}{suffix}")
        steps = Journey(ehr, countersign, patients).run()
        ids = [message for step in steps for message in step.messages]
        _say(
            f"[3/5] waiting for the write-back of {len(ids)} outbox messages (at most {options.timeout:g} s)"
        )
        messages = _wait(countersign, ids, options.timeout)
        _say("[4/5] searching the FHIR server as a CMIO would, and validating what it holds")
        searches, validator = CmioSearches(client), Validator(client)
        found: list[dict] = []
        for step in steps:
            rows, resources = _step_rows(countersign, step, messages, searches, validator)
            report.rows += rows
            found += resources
    return found


def _ehr(
    countersign: RunningCountersign, client: FhirClient, session: requests.Session, user: str
) -> SandboxEhr:
    """The sandbox EHR's workflow against the server under test, with the check's credentials."""
    store = FhirStore(client.base_url, session=session)
    cds = CdsClient(
        countersign.services_url, countersign.identity, client.base_url, fhir_token=lambda: bearer_of(session)
    )
    return SandboxEhr(store, cds, CardStore(), user)


def _wait(countersign: RunningCountersign, ids: list[int], timeout: float) -> dict[int, Message]:
    with click.progressbar(length=len(ids), label="      write-back settled", file=sys.stderr) as bar:
        shown = 0

        def progress(settled: int) -> None:
            nonlocal shown
            bar.update(settled - shown)
            shown = settled

        return wait_for_write_back(countersign, ids, timeout, progress)


def _step_rows(
    countersign: RunningCountersign,
    step: Step,
    messages: dict[int, Message],
    searches: CmioSearches,
    validator: Validator,
) -> tuple[list[Row], list[dict]]:
    rows = list(step.rows)
    own = [messages[i] for i in step.messages if i in messages]
    if not own:
        return rows, []
    rows.append(_delivered_row(step.name, own))
    found: list[dict] = []
    expected = _by_type(e for message in own for e in expected_resources(countersign, message))
    about = About(step.patient_id, tuple(step.applied), any(t == "DocumentReference" for t, _ in expected))
    for resource_type, items in expected:
        lookup = searches.look_for(resource_type, items, about)
        found += lookup.found
        hint = lookup.refusals[0] if lookup.refusals else _missing_hint(own)
        check = f"{resource_type} by {', '.join(lookup.labels)}"
        rows.append(
            Row.judge(step.name, check, len(items), len(lookup.found), hint, broken=bool(lookup.refusals))
        )
    rows.append(_validation_row(step.name, found, validator))
    return rows, found


def _delivered_row(step: str, messages: list[Message]) -> Row:
    delivered = sum(message.status == DELIVERED for message in messages)
    dead = [message for message in messages if message.status == DEAD]
    pending = [message for message in messages if message.status == PENDING]
    hint = ""
    if dead:
        reason = outcome_hint(dead[0].last_status, dead[0].last_error, " for the write-back (see --scope)")
        hint = f"dead-lettered ({dead[0].kind}): {reason}"
    elif pending:
        last = pending[0]
        reason = outcome_hint(last.last_status, last.last_error) if last.last_error else "never tried"
        hint = f"still pending at --timeout ({last.kind}): {reason}"
    return Row.judge(step, "write-back delivered (outbox messages)", len(messages), delivered, hint)


def _missing_hint(messages: list[Message]) -> str:
    if any(message.status != DELIVERED for message in messages):
        return "not written: see the write-back row above"
    return "written, but the search does not return it: does the server index this search parameter?"


def _validation_row(step: str, resources: list[dict], validator: Validator) -> Row:
    verdicts = [validator.validate(resource) for resource in resources]
    offered = [verdict for verdict in verdicts if verdict.outcome != "not-offered"]
    if resources and not offered:
        return Row(
            step, "valid ($validate)", len(resources), 0, "skipped", "the server does not offer $validate"
        )
    valid = sum(verdict.outcome == "valid" for verdict in offered)
    hint = next((verdict.hint for verdict in offered if verdict.outcome == "invalid"), "")
    return Row.judge(step, "valid ($validate)", len(offered), valid, hint)


def _by_type(expected: Iterable[Expected]) -> list[tuple[str, list[Expected]]]:
    """Each type's expected resources, once per delivery tag, in the order the table shows them."""
    groups: dict[str, dict[str, Expected]] = {}
    for item in expected:
        groups.setdefault(item.resource_type, {}).setdefault(item.key or item.condition, item)
    rank = {resource_type: index for index, resource_type in enumerate(TYPE_ORDER)}
    ordered = sorted(groups, key=lambda t: (rank.get(t, len(rank)), t))
    return [(resource_type, list(groups[resource_type].values())) for resource_type in ordered]


def _cleanup(client: FhirClient, patient_ids: list[str], known: list[dict]) -> list[Row]:
    cleanup = delete_all(client, references_to_delete(client, patient_ids, known))
    hint = "; ".join(cleanup.failures)
    return [
        Row.judge("cleanup", "resources deleted", cleanup.planned, cleanup.deleted, hint),
        Row.judge(
            "cleanup", "left on the server", 0, cleanup.left, hint or "the server kept deleted resources"
        ),
    ]


def _say(text: str) -> None:
    click.echo(text, err=True)
