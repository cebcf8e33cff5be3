"""The allowlist of EHRs the app may be launched from, and the canonical form of an ``iss``.

An ``iss`` arrives from the browser, so it is attacker-controlled: it is normalised and looked up
here before the app makes any outbound request (SSRF, secret leakage, forged identity).
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field

Role = Literal["clinician", "cmio", "safety-officer", "auditor"]
EHR_SCOPE = "launch openid fhirUser patient/*.rs user/Provenance.rs user/AuditEvent.rs offline_access"
STANDALONE_SCOPE = "openid fhirUser user/Provenance.rs user/AuditEvent.rs offline_access"
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
PRIVATE_KEY_JWT = "private_key_jwt"
TokenEndpointAuthMethod = Literal["client_secret_basic", "private_key_jwt"]


class SmartEhr(BaseModel):
    """One EHR (tenant) we are registered with: its FHIR base, our client there, and its users' roles."""

    iss: str
    client_id: str
    client_secret: str | None = None
    token_endpoint_auth_method: TokenEndpointAuthMethod = "client_secret_basic"
    """How we authenticate at its token endpoint; ``client_secret_basic`` without a secret is a public
    client. ``private_key_jwt`` signs with the client key ``client_kid`` names, else the first one."""
    client_kid: str | None = None
    ehr_scope: str = EHR_SCOPE
    standalone_scope: str = STANDALONE_SCOPE
    roles: dict[str, Role] = Field(default_factory=dict)
    frame_ancestors: list[str] = Field(default_factory=list)

    @property
    def key(self) -> str:
        return normalize_iss(self.iss, allow_http=True) or self.iss

    def origin(self) -> str:
        parts = urlsplit(self.key)
        return f"{parts.scheme}://{parts.netloc}"


def normalize_iss(raw: str, *, allow_http: bool) -> str | None:
    """Lowercase scheme and host, no userinfo, query or fragment, no trailing slash; None if unusable.

    Plain http is accepted only for loopback hosts and only when ``allow_http`` (tests, the demo).
    """
    try:
        parts = urlsplit(raw.strip())
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "")
    if parts.username or parts.password or parts.query or parts.fragment or not host:
        return None
    if scheme != "https" and not (scheme == "http" and allow_http and host in LOOPBACK_HOSTS):
        return None
    netloc = host if port is None else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def find_ehr(ehrs: list[SmartEhr], raw_iss: str, *, allow_http: bool) -> SmartEhr | None:
    """The configured EHR whose canonical ``iss`` equals the canonical form of ``raw_iss``."""
    canonical = normalize_iss(raw_iss, allow_http=allow_http)
    if canonical is None:
        return None
    return next((ehr for ehr in ehrs if ehr.key == canonical), None)
