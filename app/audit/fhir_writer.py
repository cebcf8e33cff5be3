"""Writing to an EHR's FHIR server with the service's own credentials (reference cds-hooks §5.4).

The feedback request carries no FHIR token, so each configured server has credentials of its
own: a static bearer token or none (an open sandbox). SMART Backend Services is the next kind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import requests
from pydantic import BaseModel

FHIR_JSON = "application/fhir+json"


class WriteBackServer(BaseModel):
    """A FHIR server Countersign writes to, keyed by its base URL."""

    base_url: str
    auth: Literal["none", "bearer"] = "none"
    token: str | None = None

    @property
    def key(self) -> str:
        return self.base_url.rstrip("/")


class DeliveryError(Exception):
    """A write that did not land; ``permanent`` ones are dead-lettered, the rest retried."""

    def __init__(self, reason: str, *, permanent: bool, outcome: dict | None = None) -> None:
        super().__init__(reason)
        self.permanent = permanent
        self.outcome = outcome or {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "exception", "diagnostics": reason}],
        }


@dataclass
class FhirWriter:
    server: WriteBackServer
    timeout: float = 10.0
    session: requests.Session = field(default_factory=requests.Session)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
        if self.server.auth == "bearer" and self.server.token:
            headers["Authorization"] = f"Bearer {self.server.token}"
        return headers

    def transaction(self, bundle: dict) -> dict:
        return self._call("POST", self.server.key, json=bundle)

    def search(self, resource_type: str, params: dict[str, str]) -> dict:
        return self._call("GET", f"{self.server.key}/{resource_type}", params=params)

    def _call(self, method: str, url: str, **kwargs: object) -> dict:
        try:
            response = self.session.request(
                method, url, headers=self._headers(), timeout=self.timeout, **kwargs
            )
        except requests.RequestException as error:
            raise DeliveryError(
                f"FHIR server unreachable ({type(error).__name__})", permanent=False
            ) from None
        body = _json(response)
        if response.status_code >= 400:
            transient = response.status_code >= 500 or response.status_code in (408, 429)
            outcome = body if body.get("resourceType") == "OperationOutcome" else None
            raise DeliveryError(f"HTTP {response.status_code}", permanent=not transient, outcome=outcome)
        return body


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
