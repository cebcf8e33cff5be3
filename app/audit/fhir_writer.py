"""Writing to an EHR's FHIR server with the service's own credentials (reference cds-hooks §5.4).

The feedback request carries no FHIR token, so each configured server has credentials of its
own: SMART Backend Services, a static bearer token, or none (an open sandbox).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import orjson
import requests
from pydantic import BaseModel, model_validator

from app.audit.backend_services import DEFAULT_SCOPE, BackendServicesToken, TokenError

FHIR_JSON = "application/fhir+json"


class WriteBackServer(BaseModel):
    """A FHIR server Countersign writes to, keyed by its base URL, with the credentials to use."""

    base_url: str
    auth: Literal["none", "bearer", "backend-services"] = "none"
    token: str | None = None
    client_id: str | None = None
    token_url: str | None = None
    private_key_path: Path | None = None
    kid: str | None = None
    algorithm: Literal["RS384", "ES384"] = "RS384"
    scope: str = DEFAULT_SCOPE

    @model_validator(mode="after")
    def _credentials_complete(self) -> WriteBackServer:
        if self.auth == "bearer" and not self.token:
            raise ValueError(f"{self.base_url}: bearer auth needs a token")
        needed = (self.client_id, self.token_url, self.private_key_path, self.kid)
        if self.auth == "backend-services" and not all(needed):
            raise ValueError(
                f"{self.base_url}: backend-services needs client_id, token_url, private_key_path, kid"
            )
        return self

    def token_source(self) -> BackendServicesToken | None:
        if self.auth != "backend-services":
            return None
        return BackendServicesToken(
            self.client_id, self.token_url, self.private_key_path, self.kid, self.algorithm, self.scope
        )

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

    def __post_init__(self) -> None:
        self.tokens = self.server.token_source()

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
        if self.server.auth == "bearer":
            headers["Authorization"] = f"Bearer {self.server.token}"
        elif self.tokens is not None:
            try:
                headers["Authorization"] = f"Bearer {self.tokens.bearer()}"
            except TokenError as error:
                raise DeliveryError(str(error), permanent=False) from None
        return headers

    def transaction(self, bundle: dict) -> dict:
        return self._call("POST", self.server.key, data=orjson.dumps(bundle))

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
        if response.status_code == 401 and self.tokens is not None:
            self.tokens.forget()
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
