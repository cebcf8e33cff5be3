"""SMART discovery: ``{iss}/.well-known/smart-configuration``, checked and cached per EHR.

Only called for an ``iss`` already on the allowlist. Endpoints must be absolute https URLs (or
loopback http in test mode); relative ones are resolved against the FHIR base, as 2.1+ asks.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from urllib.parse import urljoin

import requests

from smart_launch.tenants import normalize_iss

log = logging.getLogger(__name__)
REQUIRED = ("authorization_endpoint", "token_endpoint")


class DiscoveryError(Exception):
    """The EHR's SMART configuration is missing, malformed or unsafe."""


@dataclass(frozen=True)
class SmartConfiguration:
    authorization_endpoint: str
    token_endpoint: str
    issuer: str
    jwks_uri: str | None
    revocation_endpoint: str | None
    token_endpoint_auth_methods: tuple[str, ...] = ()
    token_endpoint_auth_signing_algs: tuple[str, ...] = ()


class DiscoveryCache:
    """Per-process cache of each EHR's configuration (a cache, never state another worker needs)."""

    def __init__(self, timeout: float, cache_seconds: int, allow_http: bool) -> None:
        self.timeout = timeout
        self.cache_seconds = cache_seconds
        self.allow_http = allow_http
        self._entries: dict[str, tuple[float, SmartConfiguration]] = {}
        self._lock = threading.Lock()

    def get(self, iss: str) -> SmartConfiguration:
        with self._lock:
            cached = self._entries.get(iss)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        configuration = self._fetch(iss)
        with self._lock:
            self._entries[iss] = (time.monotonic() + self.cache_seconds, configuration)
        return configuration

    def _fetch(self, iss: str) -> SmartConfiguration:
        url = f"{iss}/.well-known/smart-configuration"
        try:
            response = requests.get(url, headers={"Accept": "application/json"}, timeout=self.timeout)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as error:
            raise DiscoveryError(f"SMART configuration not available ({type(error).__name__})") from None
        if not isinstance(document, dict):
            raise DiscoveryError("SMART configuration is not a JSON object")
        if "S256" not in (document.get("code_challenge_methods_supported") or []):
            log.warning("EHR %s does not advertise PKCE S256; sending it anyway", iss)
        endpoints = {name: self._endpoint(iss, document.get(name)) for name in REQUIRED}
        if None in endpoints.values():
            raise DiscoveryError("SMART configuration lacks an authorization or token endpoint")
        return SmartConfiguration(
            authorization_endpoint=endpoints["authorization_endpoint"],
            token_endpoint=endpoints["token_endpoint"],
            issuer=document.get("issuer") or iss,
            jwks_uri=self._endpoint(iss, document.get("jwks_uri")),
            revocation_endpoint=self._endpoint(iss, document.get("revocation_endpoint")),
            token_endpoint_auth_methods=_strings(document.get("token_endpoint_auth_methods_supported")),
            token_endpoint_auth_signing_algs=_strings(
                document.get("token_endpoint_auth_signing_alg_values_supported")
            ),
        )

    def _endpoint(self, iss: str, value: object) -> str | None:
        if not isinstance(value, str) or not value:
            return None
        absolute = urljoin(f"{iss}/", value)
        if normalize_iss(absolute.split("?", 1)[0], allow_http=self.allow_http) is None:
            raise DiscoveryError("SMART configuration names an endpoint that is not https")
        return absolute


def _strings(value: object) -> tuple[str, ...]:
    """A list of names from the document; anything else counts as not listed."""
    return tuple(item for item in value if isinstance(item, str)) if isinstance(value, list) else ()
