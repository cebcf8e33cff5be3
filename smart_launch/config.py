"""What the SMART blueprint needs from the application, gathered in one object at start-up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Engine

from smart_launch.client_auth import ClientKey, key_for
from smart_launch.discovery import DiscoveryCache
from smart_launch.sealing import Sealer
from smart_launch.tenants import SmartEhr, find_ehr

EXTENSION_KEY = "smart_launch"
URL_PREFIX = "/app"
CALLBACK_PATH = f"{URL_PREFIX}/callback"


@dataclass
class SmartConfig:
    engine: Engine
    ehrs: list[SmartEhr]
    public_base_url: str
    landing: Callable[[dict], str]
    """The URL a user lands on after sign-in, from the launch context (the host app's pages)."""
    sealer: Sealer
    """Seals the tokens and PKCE verifiers the store keeps (the host's data keys)."""
    standalone_iss: str | None = None
    allow_http_loopback: bool = False
    session_seconds: int = 8 * 3600
    timeout: float = 3.0
    discovery_cache_seconds: int = 300
    client_keys: list[ClientKey] = field(default_factory=list)
    """Our private keys for ``private_key_jwt`` (the host publishes their public halves)."""
    discovery: DiscoveryCache = field(init=False)

    def __post_init__(self) -> None:
        self.discovery = DiscoveryCache(self.timeout, self.discovery_cache_seconds, self.allow_http_loopback)

    @property
    def redirect_uri(self) -> str:
        """Fixed from configuration, never from the request's Host header."""
        return self.public_base_url.rstrip("/") + CALLBACK_PATH

    def ehr(self, iss: str | None) -> SmartEhr | None:
        return find_ehr(self.ehrs, iss or "", allow_http=self.allow_http_loopback)

    def client_key(self, ehr: SmartEhr) -> ClientKey | None:
        return key_for(self.client_keys, ehr)

    def standalone_ehr(self) -> SmartEhr | None:
        if self.standalone_iss:
            return self.ehr(self.standalone_iss)
        return self.ehrs[0] if self.ehrs else None

    def frame_ancestors(self) -> list[str]:
        return sorted({origin for ehr in self.ehrs for origin in [ehr.origin(), *ehr.frame_ancestors]})
