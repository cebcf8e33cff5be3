"""Writing to an EHR's FHIR server with the service's own credentials (reference cds-hooks §5.4).

The feedback request carries no FHIR token, so each configured server has credentials of its
own: SMART Backend Services, a static bearer token, or none (an open sandbox).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import orjson
import requests

from app.settings import WriteBackServer
from app.writeback.backend_services import TokenError, token_source

FHIR_JSON = "application/fhir+json"
#: Statuses that say the server did not take the request (overloaded, down, timed out, gateway).
NOT_TAKEN = frozenset({408, 429, 502, 503, 504})
#: Client errors worth another try: 409 is what HAPI FHIR answers when two transactions conditionally
#: create the same resource at once; sent again, the conditional create matches the one that won.
RETRIED_CLIENT_ERRORS = frozenset({408, 409, 429})


class DeliveryError(Exception):
    """A write that did not land; ``permanent`` ones are dead-lettered, the rest retried.

    ``status`` is the server's HTTP status (None when no answer came, or when the failure is ours);
    ``retry_after`` is the server's ``Retry-After`` in seconds; ``unanswered`` says the server did
    not take the request at all, so that sending it anything else now is pointless.
    """

    def __init__(
        self,
        reason: str,
        *,
        permanent: bool,
        outcome: dict | None = None,
        status: int | None = None,
        retry_after: float | None = None,
        unanswered: bool = False,
    ) -> None:
        super().__init__(reason)
        self.permanent = permanent
        self.status = status
        self.retry_after = retry_after
        self.unanswered = unanswered or status in NOT_TAKEN
        self.outcome = outcome or {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "error", "code": "exception", "diagnostics": reason}],
        }

    @property
    def server_fault(self) -> bool:
        """The target failed (no answer, 5xx, 408, 429), as opposed to refusing or our own error:
        what the per-target circuit breaker counts."""
        return self.unanswered or (self.status is not None and self.status >= 500)


@dataclass
class FhirWriter:
    server: WriteBackServer
    timeout: float = 10.0
    session: requests.Session = field(default_factory=requests.Session)

    def __post_init__(self) -> None:
        self.tokens = token_source(self.server)

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": FHIR_JSON, "Content-Type": FHIR_JSON}
        if self.server.auth == "bearer":
            headers["Authorization"] = f"Bearer {self.server.token}"
        elif self.tokens is not None:
            try:
                headers["Authorization"] = f"Bearer {self.tokens.bearer()}"
            except TokenError as error:
                raise DeliveryError(str(error), permanent=False, unanswered=True) from None
        return headers

    def transaction(self, bundle: dict) -> dict:
        return self._call("POST", self.server.key, data=orjson.dumps(bundle))

    def search(self, resource_type: str, params: dict[str, str]) -> dict:
        """A fresh answer: HAPI FHIR serves a search repeated within a minute from its cache, which
        would hide a resource the EHR has just written (an accepted change, a signed order)."""
        url = f"{self.server.key}/{resource_type}"
        return self._call("GET", url, params=params, headers={"Cache-Control": "no-cache"})

    def page(self, url: str) -> dict:
        """A further page of a search, by the ``next`` link the server gave: only on this server,
        so that our credentials never go anywhere else."""
        if not url.startswith((f"{self.server.key}/", f"{self.server.key}?")):
            raise DeliveryError("the next page is not on this server", permanent=True)
        return self._call("GET", url, headers={"Cache-Control": "no-cache"})

    def _call(self, method: str, url: str, **kwargs: object) -> dict:
        try:
            headers = self._headers() | kwargs.pop("headers", {})
            response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
            raise DeliveryError(
                f"FHIR server unreachable ({type(error).__name__})", permanent=False, unanswered=True
            ) from None
        body = _json(response)
        if response.status_code == 401 and self.tokens is not None:
            self.tokens.forget()
        if response.status_code >= 400:
            transient = response.status_code >= 500 or response.status_code in RETRIED_CLIENT_ERRORS
            outcome = body if body.get("resourceType") == "OperationOutcome" else None
            raise DeliveryError(
                f"HTTP {response.status_code}",
                permanent=not transient,
                outcome=outcome,
                status=response.status_code,
                retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            )
        return body


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds from now: delay-seconds or an HTTP-date (RFC 9110 §10.2.3).
    Anything else, or a date in the past, is no advice (None)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    return seconds if seconds > 0 else None


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
