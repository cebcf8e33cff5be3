"""The sandbox EHR as a CDS Hooks 2.0.1 client: discovery, prefetch, signed calls, feedback.

It behaves as an EHR's integration layer does: it reads the service's discovery document, fills
each prefetch template from the hook's context and runs the query against its own FHIR server,
and signs every request with its own ES384 key (published as a JWKS the service trusts).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import requests

from cds_hooks.fhir_client import FhirReader, FhirReadError
from cds_hooks.hooks import HOOKS
from cds_hooks.models import parse_context
from cds_hooks.prefetch import render_template
from sandbox.demo_client import client_token, ensure_key, public_jwks

log = logging.getLogger(__name__)

SANDBOX_ISSUER = "https://sandbox-ehr.countersign.local"
SANDBOX_KID = "sandbox-ehr-es384"
SANDBOX_KEY_FILE = "sandbox-ehr-es384.pem"
DISCOVERY_CACHE_SECONDS = 30.0


@dataclass(frozen=True)
class ClientIdentity:
    """The EHR's signing key and the ``iss``/``kid`` its tokens carry."""

    key_path: Path
    issuer: str = SANDBOX_ISSUER
    kid: str = SANDBOX_KID

    @classmethod
    def in_directory(cls, directory: Path) -> ClientIdentity:
        return cls(ensure_key(directory, SANDBOX_KEY_FILE))

    def token(self, audience: str) -> str:
        return client_token(self.key_path, audience, issuer=self.issuer, kid=self.kid)

    def jwks(self) -> dict:
        return public_jwks(self.key_path, self.kid)


@dataclass(frozen=True)
class ServiceEntry:
    """One discovery entry: ``(id, hook)`` is the key, an id may answer several hooks."""

    id: str
    hook: str
    title: str
    prefetch: dict[str, str]


@dataclass(frozen=True)
class HookOutcome:
    """The cards each service returned (tagged with the service id) and the services that failed."""

    cards: list[dict]
    failures: list[str]


class CdsCallError(Exception):
    """A CDS request the service refused; the message holds the status, never patient data."""


@dataclass
class CdsClient:
    services_url: str
    identity: ClientIdentity
    fhir_server: str
    timeout: float = 10.0
    session: requests.Session = field(default_factory=requests.Session)
    #: The EHR's own access token for its FHIR server's prefetch reads (None: an open sandbox).
    fhir_token: Callable[[], str | None] | None = None
    _discovery: tuple[float, list[ServiceEntry]] | None = None

    def __post_init__(self) -> None:
        self.services_url = self.services_url.rstrip("/")
        self.fhir_server = self.fhir_server.rstrip("/")

    def services(self, hook: str) -> list[ServiceEntry]:
        return [entry for entry in self.discover() if entry.hook == hook]

    def discover(self) -> list[ServiceEntry]:
        """``GET /cds-services``, cached briefly so that opening charts does not repeat it."""
        if self._discovery and time.monotonic() - self._discovery[0] < DISCOVERY_CACHE_SECONDS:
            return self._discovery[1]
        document = self._request("GET", self.services_url)
        entries = [
            ServiceEntry(s["id"], s["hook"], s.get("title", s["id"]), dict(s.get("prefetch") or {}))
            for s in document.get("services", [])
            if s.get("hook") in HOOKS
        ]
        self._discovery = (time.monotonic(), entries)
        return entries

    def prefetch(self, entry: ServiceEntry, context: dict) -> dict:
        """Each template filled from ``context`` and run on our FHIR server.

        A read that finds nothing is sent as ``null`` (known empty); a template whose tokens have
        no value, or a query that fails, is left out so the service can fetch or report it.
        """
        parsed = parse_context(HOOKS[entry.hook], context)
        token = self.fhir_token() if self.fhir_token else None
        reader = FhirReader(self.fhir_server, token, self.timeout, time.monotonic() + self.timeout, 20)
        values: dict = {}
        for key, template in entry.prefetch.items():
            query = render_template(template, parsed)
            if query is None:
                continue
            try:
                values[key] = reader.read(query)
            except FhirReadError as error:
                log.warning("prefetch %s of %s left to the service: %s", key, entry.id, error)
        return values

    def request_body(self, entry: ServiceEntry, context: dict) -> dict:
        return {
            "hookInstance": str(uuid.uuid4()),
            "hook": entry.hook,
            "fhirServer": self.fhir_server,
            "context": context,
            "prefetch": self.prefetch(entry, context),
        }

    def call_hook(self, hook: str, context: dict) -> HookOutcome:
        """Call every service that answers ``hook``; one failing service never hides the others."""
        cards: list[dict] = []
        failures: list[str] = []
        for entry in self.services(hook):
            url = f"{self.services_url}/{entry.id}"
            try:
                response = self._request("POST", url, json=self.request_body(entry, context))
            except CdsCallError as error:
                log.warning("CDS service %s failed on %s: %s", entry.id, hook, error)
                failures.append(entry.title)
                continue
            issued = [c for c in response.get("cards") or () if isinstance(c, dict) and c.get("uuid")]
            cards.extend({"service": entry.id, "hook": hook, "card": card} for card in issued)
        return HookOutcome(cards, failures)

    def feedback(self, service_id: str, item: dict) -> None:
        item = {"outcomeTimestamp": _now(), **item}
        self._request("POST", f"{self.services_url}/{service_id}/feedback", json={"feedback": [item]})

    def _request(self, method: str, url: str, **kwargs: object) -> dict:
        headers = {"Authorization": f"Bearer {self.identity.token(url)}", "Accept": "application/json"}
        try:
            response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
            raise CdsCallError(f"service unreachable ({type(error).__name__})") from None
        if response.status_code != 200:
            raise CdsCallError(f"HTTP {response.status_code}")
        if not response.content:
            return {}
        try:
            return response.json()
        except ValueError:
            raise CdsCallError("response is not JSON") from None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
