"""Reading what the HAPI FHIR server holds, the way its defaults require.

HAPI answers a search repeated within 60 s from its cache and caps a page at 50 resources, so a
count taken after a write asks it to skip the cache (``Cache-Control: no-cache``), counts with
``_summary=count`` and follows ``next`` links.
"""

from __future__ import annotations

import requests

FRESH = {"Accept": "application/fhir+json", "Cache-Control": "no-cache"}
MAX_PAGES = 100


def count(base: str, resource_type: str, **params: str) -> int:
    """How many resources match, counted by the server."""
    answer = requests.get(
        f"{base}/{resource_type}", params=params | {"_summary": "count"}, headers=FRESH, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return answer.json()["total"]


def search_all(base: str, resource_type: str, **params: str) -> list[dict]:
    """Every match, page after page."""
    url: str | None = f"{base}/{resource_type}"
    query: dict[str, str] | None = params | {"_count": "50"}
    found: list[dict] = []
    for _ in range(MAX_PAGES):
        if url is None:
            return found
        page = requests.get(url, params=query, headers=FRESH, timeout=30)
        assert page.status_code == 200, page.text
        bundle = page.json()
        found += [entry["resource"] for entry in bundle.get("entry", []) if "resource" in entry]
        url = next((link["url"] for link in bundle.get("link", []) if link["relation"] == "next"), None)
        query = None
    raise AssertionError(f"{resource_type}?{params}: more than {MAX_PAGES} pages")


def validation_errors(base: str, resource: dict) -> list[str]:
    """What HAPI's ``$validate`` finds wrong with a resource: errors and fatal issues, with where."""
    answer = requests.post(
        f"{base}/{resource['resourceType']}/$validate",
        json=resource,
        headers={"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"},
        timeout=60,
    )
    issues = answer.json()["issue"]
    return [
        f"{issue.get('diagnostics', '')} at {issue.get('expression', issue.get('location'))}"
        for issue in issues
        if issue["severity"] in ("error", "fatal")
    ]
