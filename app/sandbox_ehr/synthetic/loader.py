"""Loading the synthetic cohort into a FHIR server: one transaction per patient (all or nothing)."""

from __future__ import annotations

from datetime import date

import requests

from app.sandbox_ehr.synthetic import resources as fhir
from app.sandbox_ehr.synthetic.cohort import SyntheticPatient, cohort, shared_resources

FHIR_JSON = "application/fhir+json"


class LoadError(Exception):
    """A bundle the server refused; the message names the patient id and the server's diagnostics."""


def load_cohort(
    fhir_base: str,
    today: date | None = None,
    suffix: str = "",
    only: set[str] | None = None,
    timeout: float = 30,
) -> list[SyntheticPatient]:
    """PUT every resource with its fixed id, so loading again refreshes rather than duplicates.

    ``only``: the (unsuffixed) ids of the patients to load; all of them by default.
    """
    patients = [p for p in cohort(today, suffix) if only is None or p.id.removesuffix(suffix) in only]
    _post(fhir_base, fhir.transaction(shared_resources()), "shared resources", timeout)
    for patient in patients:
        _post(fhir_base, patient.bundle(), patient.id, timeout)
    return patients


def _post(fhir_base: str, bundle: dict, label: str, timeout: float) -> None:
    response = requests.post(
        fhir_base.rstrip("/"),
        json=bundle,
        headers={"Content-Type": FHIR_JSON, "Accept": FHIR_JSON},
        timeout=timeout,
    )
    if response.status_code != 200:
        raise LoadError(f"{label}: HTTP {response.status_code} {_diagnostics(response)}")


def _diagnostics(response: requests.Response) -> str:
    try:
        issues = response.json().get("issue", [])
    except ValueError:
        return ""
    return "; ".join(str(issue.get("diagnostics", "")) for issue in issues if isinstance(issue, dict))
