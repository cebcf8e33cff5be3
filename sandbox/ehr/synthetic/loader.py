"""Loading the synthetic cohort into a FHIR server: one transaction per patient (all or nothing)."""

from __future__ import annotations

from datetime import date

import requests

from sandbox.ehr.fhir_store import with_full_urls
from sandbox.ehr.synthetic import resources as fhir
from sandbox.ehr.synthetic.cohort import SyntheticPatient, cohort, shared_resources

FHIR_JSON = "application/fhir+json"


class LoadError(Exception):
    """A bundle the server refused; the message names the patient id and the server's diagnostics,
    ``status`` and ``outcome`` are the server's HTTP status and OperationOutcome (if it sent one)."""

    def __init__(self, message: str, status: int | None = None, outcome: dict | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.outcome = outcome


def load_cohort(
    fhir_base: str,
    today: date | None = None,
    suffix: str = "",
    only: set[str] | None = None,
    timeout: float = 30,
    own_staff: bool = False,
    session: requests.Session | None = None,
) -> list[SyntheticPatient]:
    """PUT every resource with its fixed id, so loading again refreshes rather than duplicates.

    ``only``: the (unsuffixed) ids of the patients to load; all of them by default. ``own_staff``:
    the practitioners get the suffix too (see ``cohort``). ``session``: one that carries the
    server's credentials, for a FHIR server that is not an open sandbox.
    """
    http = session or requests.Session()
    patients = [
        p for p in cohort(today, suffix, own_staff) if only is None or p.id.removesuffix(suffix) in only
    ]
    staff = shared_resources(suffix if own_staff else "")
    _post(http, fhir_base, fhir.transaction(staff), "shared resources", timeout)
    for patient in patients:
        _post(http, fhir_base, patient.bundle(), patient.id, timeout)
    return patients


def _post(http: requests.Session, fhir_base: str, bundle: dict, label: str, timeout: float) -> None:
    response = http.post(
        fhir_base.rstrip("/"),
        json=with_full_urls(bundle, fhir_base),
        headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON},
        timeout=timeout,
    )
    if response.status_code != 200:
        raise LoadError(
            f"{label}: HTTP {response.status_code} {_diagnostics(response)}",
            response.status_code,
            _outcome(response),
        )


def _diagnostics(response: requests.Response) -> str:
    try:
        issues = response.json().get("issue", [])
    except ValueError:
        return ""
    return "; ".join(str(issue.get("diagnostics", "")) for issue in issues if isinstance(issue, dict))


def _outcome(response: requests.Response) -> dict | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) and body.get("resourceType") == "OperationOutcome" else None
