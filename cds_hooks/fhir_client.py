"""Reads from the CDS client's FHIR server with the hook's ``fhirAuthorization`` (reference §2.4).

Short timeouts and one overall deadline keep a slow EHR from stalling the clinician's chart;
paging is followed only on the same server, so the token never travels anywhere else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import requests

FHIR_JSON = "application/fhir+json"


class FhirReadError(Exception):
    """The data could not be read; the message names the cause without any patient data."""


@dataclass
class FhirReader:
    base_url: str
    access_token: str | None
    timeout: float
    deadline: float
    max_pages: int

    def read(self, relative_query: str) -> dict | None:
        """Run a prefetch query; a read of a missing resource is ``None`` (known empty)."""
        first = self._get(f"{self.base_url}/{relative_query.lstrip('/')}", allow_missing=True)
        if first is None or first.get("resourceType") != "Bundle":
            return first
        return self.complete_pages(first)

    def complete_pages(self, bundle: dict) -> dict:
        """Follow ``next`` links and return one Bundle holding every page's entries."""
        entries = list(bundle.get("entry", []))
        page, pages = bundle, 1
        while (next_url := next_link(page)) is not None:
            if pages >= self.max_pages:
                raise FhirReadError(f"more than {self.max_pages} pages")
            if not _on_server(next_url, self.base_url):
                raise FhirReadError("next link points outside fhirServer")
            page = self._get(next_url, allow_missing=False) or {}
            entries.extend(page.get("entry", []))
            pages += 1
        merged = {key: value for key, value in bundle.items() if key not in ("link", "entry")}
        if entries:
            merged["entry"] = entries
        return merged

    def _get(self, url: str, *, allow_missing: bool) -> dict | None:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise FhirReadError("time budget for FHIR reads exhausted")
        # HAPI answers a search repeated within 60 s from its cache: without no-cache, an order
        # signed a moment ago would be missing from the next call's active medications.
        headers = {"Accept": FHIR_JSON, "Cache-Control": "no-cache"}
        if self.access_token:
            headers["Authorization"] = f"Bearer {self.access_token}"
        try:
            response = requests.get(url, headers=headers, timeout=min(self.timeout, remaining))
        except requests.RequestException as error:
            raise FhirReadError(f"FHIR server unreachable ({type(error).__name__})") from None
        if response.status_code in (404, 410) and allow_missing:
            return None
        if response.status_code != 200:
            raise FhirReadError(f"FHIR server answered HTTP {response.status_code}")
        try:
            body = response.json()
        except ValueError:
            raise FhirReadError("FHIR server answered with invalid JSON") from None
        if not isinstance(body, dict):
            raise FhirReadError("FHIR server answered with a non-resource")
        return body


def next_link(bundle: dict) -> str | None:
    """The URL of a searchset's next page, if it has one."""
    for link in bundle.get("link", []):
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return link["url"]
    return None


def _on_server(url: str, base_url: str) -> bool:
    """True for the base itself and anything below it (HAPI pages as ``{base}?_getpages=``)."""
    rest = url[len(base_url) :] if url.startswith(base_url) else None
    return rest is not None and (rest == "" or rest[0] in "/?")


def has_next_page(bundle: dict) -> bool:
    return next_link(bundle) is not None
