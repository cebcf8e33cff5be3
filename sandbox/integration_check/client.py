"""The check's FHIR client: every request ends in an ``Answer``, never an exception, because a
refusal (401, 400 on a search, 404 for ``$validate``) is exactly what the check reports."""

from __future__ import annotations

from dataclasses import dataclass, field

import requests

from app.writeback.backend_services import TokenError
from cds_hooks.fhir_client import next_link

MAX_PAGES = 20
PAGE_SIZE = "200"


@dataclass(frozen=True)
class Answer:
    status: int | None
    body: dict

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def outcome(self) -> dict | None:
        return self.body if self.body.get("resourceType") == "OperationOutcome" else None


@dataclass(frozen=True)
class Found:
    """A search's resources (every page, included ones too), or the answer that refused it."""

    resources: list[dict] = field(default_factory=list)
    refusal: Answer | None = None


@dataclass
class FhirClient:
    base_url: str
    session: requests.Session
    timeout: float = 30.0

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")

    def request(self, method: str, path: str, **kwargs: object) -> Answer:
        url = path if path.startswith(("http://", "https://")) else f"{self.base_url}/{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
            return _unanswered(f"FHIR server unreachable ({type(error).__name__})")
        except TokenError as error:
            return _unanswered(str(error))
        try:
            body = response.json()
        except ValueError:
            body = {}
        return Answer(response.status_code, body if isinstance(body, dict) else {})

    def search(self, resource_type: str, params: dict[str, str]) -> Found:
        """Every page of ``resource_type?params`` (next links followed, at most ``MAX_PAGES``), fresh:
        HAPI FHIR would answer a search repeated within a minute from its cache."""
        fresh = {"Cache-Control": "no-cache"}
        answer = self.request("GET", resource_type, params={"_count": PAGE_SIZE, **params}, headers=fresh)
        resources: list[dict] = []
        for _ in range(MAX_PAGES):
            if not answer.ok:
                return Found(resources, answer)
            resources += [e["resource"] for e in answer.body.get("entry", []) if "resource" in e]
            following = next_link(answer.body)
            if following is None:
                break
            answer = self.request("GET", following, headers=fresh)
        return Found(resources)


def _unanswered(reason: str) -> Answer:
    issue = {"severity": "error", "code": "exception", "diagnostics": reason}
    return Answer(None, {"resourceType": "OperationOutcome", "issue": [issue]})
