"""The sandbox EHR's own access to its FHIR server: as the system of record it reads and writes."""

from __future__ import annotations

from dataclasses import dataclass, field

import requests

from cds_hooks.fhir_client import next_link

FHIR_JSON = "application/fhir+json"
MAX_PAGES = 20  # a chart of one type past 20 pages is not a chart the sandbox has
PAGE_SIZE = "200"


class FhirStoreError(Exception):
    """A refused or failed FHIR request; ``status`` is the server's HTTP status (502 if unreachable)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class FhirStore:
    base_url: str
    timeout: float = 10.0
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")

    def read(self, resource_type: str, resource_id: str) -> dict:
        return self._call("GET", f"{resource_type}/{resource_id}")

    def search(self, resource_type: str, **params: str) -> list[dict]:
        """Every match of a search, following the server's next links (HAPI FHIR pages at 50)."""
        bundle = self._call("GET", resource_type, params={"_count": PAGE_SIZE, **params})
        found = _resources(bundle)
        for _ in range(MAX_PAGES):
            following = next_link(bundle)
            if following is None:
                break
            bundle = self._call("GET", following)
            found += _resources(bundle)
        return found

    def create(self, resource: dict) -> dict:
        return self._call("POST", resource["resourceType"], json=resource)

    def update(self, resource: dict) -> dict:
        return self._call("PUT", f"{resource['resourceType']}/{resource['id']}", json=resource)

    def transaction(self, bundle: dict) -> dict:
        return self._call("POST", "", json=with_full_urls(bundle, self.base_url))

    def _call(self, method: str, path: str, **kwargs: object) -> dict:
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path}".rstrip("/")
        headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
        if method == "GET":
            # HAPI answers a search repeated within 60 s from its cache: a draft just saved
            # would be missing from the order list. The system of record reads what it holds.
            headers["Cache-Control"] = "no-cache"
        try:
            response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
            raise FhirStoreError(f"FHIR server unreachable ({type(error).__name__})", 502) from None
        body = _json(response)
        if response.status_code >= 400:
            raise FhirStoreError(f"FHIR server answered HTTP {response.status_code}", response.status_code)
        return body


def with_full_urls(bundle: dict, base_url: str) -> dict:
    """The transaction with a ``fullUrl`` on each PUT entry that lacks one: the resource's URL on
    this server, so the relative references inside it resolve there (the spec wants a fullUrl on
    every entry; HAPI refuses "Bundle entry missing fullUrl" when the resource holds a reference)."""
    base = base_url.rstrip("/")
    entries = [
        {"fullUrl": f"{base}/{entry['request']['url']}", **entry}
        if "resource" in entry and "fullUrl" not in entry and entry["request"]["method"] == "PUT"
        else entry
        for entry in bundle.get("entry", [])
    ]
    return {**bundle, "entry": entries}


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _resources(bundle: dict) -> list[dict]:
    return [entry["resource"] for entry in bundle.get("entry", []) if "resource" in entry]
