"""Configuration read from the environment (prefix ``COUNTERSIGN_``).

One typed object so that a wrong value fails at start, naming the variable, rather
than at the first hook call.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.db import DEFAULT_POOL, PoolOptions
from cds_hooks.auth import TrustedClient
from smart_launch.client_auth import ClientKey, key_for
from smart_launch.sealing import KEY_BYTES, decode_key
from smart_launch.tenants import PRIVATE_KEY_JWT, SmartEhr

#: An origin a CSP ``frame-ancestors`` may name: scheme, host (``*.`` subdomains allowed), port.
ORIGIN = r"^https?://(\*\.)?[A-Za-z0-9.-]+(:\d{1,5})?$"

MIN_SECRET_LENGTH = 16
#: What Countersign asks a write-back server for with SMART Backend Services.
DEFAULT_SCOPE = " ".join(
    f"system/{resource}.{permissions}"
    for resource, permissions in (
        ("Device", "crs"),
        ("GuidanceResponse", "crs"),
        ("RequestGroup", "crs"),
        ("Provenance", "crs"),
        ("AuditEvent", "crs"),
        ("Task", "crs"),
        ("MedicationRequest", "rs"),
        ("ServiceRequest", "rs"),
        ("Condition", "rs"),
    )
)


def _key_check(setting: str) -> Callable[[SecretStr], SecretStr]:
    def check(key: SecretStr) -> SecretStr:
        try:
            decode_key(key.get_secret_value())
        except ValueError:
            raise ValueError(
                f"{setting}: each key must be {KEY_BYTES} random bytes in base64url "
                "(`countersign keys generate` prints one)"
            ) from None
        return key

    return check


#: A key that seals secrets at rest, kept as the operator wrote it and masked in every error.
DataKey = Annotated[SecretStr, AfterValidator(_key_check("COUNTERSIGN_DATA_KEYS"))]
#: A key that MACs ledger entries and seals (``app.audit.ledger.keys``), masked the same way.
LedgerKey = Annotated[SecretStr, AfterValidator(_key_check("COUNTERSIGN_LEDGER_KEYS"))]


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

    @property
    def key(self) -> str:
        return self.base_url.rstrip("/")


class Settings(BaseSettings):
    """Every knob of the service; see the README's configuration table."""

    # Settings hold secrets: an error names the variable, never echoes the value it was given.
    model_config = SettingsConfigDict(env_prefix="COUNTERSIGN_", extra="ignore", hide_input_in_errors=True)

    database_url: str = ""
    #: The hospital's own model cards (external models), beside the ones shipped in the repository.
    model_cards_dir: Path | None = None
    database_pool_size: int = Field(default=DEFAULT_POOL.size, ge=1)
    database_max_overflow: int = Field(default=DEFAULT_POOL.overflow, ge=0)
    database_prepared_statements: bool = DEFAULT_POOL.prepared_statements
    #: Each worker re-checks (SQLite) or confirms its listener (PostgreSQL) this often; a change of
    #: model status or a new override reaches every worker within twice this, hence at most 0.5.
    governance_refresh_seconds: float = Field(default=0.25, gt=0, le=0.5)
    public_base_url: str = "http://localhost:8000"
    auth_disabled: bool = False
    trusted_clients: list[TrustedClient] = Field(default_factory=list)
    trusted_clients_file: Path | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    jwt_leeway_seconds: int = 60
    jwt_max_lifetime_seconds: int = 3600
    jwks_cache_seconds: int = 300
    jwks_refresh_min_interval_seconds: float = 30.0
    fhir_timeout_seconds: float = 3.0
    prefetch_budget_seconds: float = 5.0
    prefetch_max_pages: int = 50
    require_https_fhir: bool = False
    log_level: str = "INFO"
    writeback_servers: list[WriteBackServer] = Field(default_factory=list)
    writeback_default_server: str | None = None
    outbox_in_process: bool = True
    outbox_batch_size: int = 20
    outbox_lease_seconds: float = 60.0
    outbox_retry_window_hours: float = Field(default=72.0, ge=0)
    outbox_base_delay_seconds: float = Field(default=1.0, gt=0)
    outbox_breaker_failures: int = Field(default=5, ge=1)
    outbox_probe_seconds: float = Field(default=30.0, gt=0)
    smart_ehrs: list[SmartEhr] = Field(default_factory=list)
    smart_standalone_iss: str | None = None
    smart_allow_http_loopback: bool = False
    smart_session_seconds: int = 8 * 3600
    smart_discovery_cache_seconds: int = 300
    smart_client_keys: list[ClientKey] = Field(default_factory=list)
    max_json_depth: int = Field(default=64, ge=2)
    rate_limit_per_minute: int = Field(default=6000, ge=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    frame_ancestors: list[Annotated[str, Field(pattern=ORIGIN)]] = Field(default_factory=list)
    trusted_proxies: int = Field(default=0, ge=0)
    log_hash_key: str | None = None
    llm_url: str = ""
    llm_model: str = ""
    llm_api_key: SecretStr = SecretStr("")
    llm_deadline_seconds: float = Field(default=6.0, gt=0, le=30)
    llm_breaker_failures: int = Field(default=3, ge=1)
    llm_breaker_reset_seconds: float = Field(default=30.0, gt=0)
    deidentify_secret: SecretStr = SecretStr("")
    metrics_token: SecretStr = SecretStr("")
    data_keys: Annotated[list[DataKey], NoDecode] = Field(default_factory=list)
    ledger_keys: Annotated[list[LedgerKey], NoDecode] = Field(default_factory=list)
    #: Seal from a thread of each web process; the window an entry waits is at most about the
    #: interval, and ``/readyz`` fails once the oldest unsealed entry has waited the limit.
    ledger_seal_in_process: bool = True
    ledger_seal_interval_seconds: float = Field(default=0.25, gt=0, le=1)
    ledger_unsealed_limit_seconds: float = Field(default=10.0, gt=1)
    signing_key_path: Path | None = None
    signing_key_id: str | None = Field(default=None, min_length=1)

    @field_validator("data_keys", "ledger_keys", mode="before")
    @classmethod
    def _split_keys(cls, value: object) -> object:
        """Comma-separated, first key first; each one masked before it is checked, so that a
        validation error cannot print it."""
        if isinstance(value, str):
            value = [part for part in value.split(",") if part.strip()]
        if isinstance(value, list):
            return [SecretStr(item.strip()) if isinstance(item, str) else item for item in value]
        return value

    @field_validator("metrics_token")
    @classmethod
    def _metrics_token_long_enough(cls, token: SecretStr) -> SecretStr:
        """Unset disables ``/metrics``; a short token would be guessable."""
        if 0 < len(token.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(f"COUNTERSIGN_METRICS_TOKEN must be at least {MIN_SECRET_LENGTH} characters")
        return token

    @model_validator(mode="after")
    def _load_trusted_clients_file(self) -> Settings:
        if self.trusted_clients_file is not None:
            entries = json.loads(self.trusted_clients_file.read_text())
            self.trusted_clients = [*self.trusted_clients, *map(TrustedClient.model_validate, entries)]
        return self

    @model_validator(mode="after")
    def _llm_needs_model_and_secret(self) -> Settings:
        """A model endpoint without a model name or a de-identification secret must not start."""
        if self.llm_url and not self.llm_model:
            raise ValueError("COUNTERSIGN_LLM_MODEL must be set when COUNTERSIGN_LLM_URL is")
        if self.llm_url and len(self.deidentify_secret.get_secret_value()) < MIN_SECRET_LENGTH:
            raise ValueError(
                f"COUNTERSIGN_DEIDENTIFY_SECRET (at least {MIN_SECRET_LENGTH} characters) must be set "
                "when COUNTERSIGN_LLM_URL is"
            )
        return self

    @model_validator(mode="after")
    def _private_key_jwt_has_a_key(self) -> Settings:
        """An EHR entry set to private_key_jwt without its signing key could never sign anyone in."""
        for ehr in self.smart_ehrs:
            signs = ehr.token_endpoint_auth_method == PRIVATE_KEY_JWT
            if signs and key_for(self.smart_client_keys, ehr) is None:
                missing = f"no key {ehr.client_kid!r}" if ehr.client_kid else "no key"
                raise ValueError(
                    f"COUNTERSIGN_SMART_EHRS: {ehr.iss} uses private_key_jwt, but "
                    f"COUNTERSIGN_SMART_CLIENT_KEYS has {missing}"
                )
        return self

    def writeback_target(self, fhir_server: str | None) -> str | None:
        """Where a record is written back: the hook's fhirServer if we hold credentials for it."""
        configured = {server.key for server in self.writeback_servers}
        candidate = (fhir_server or self.writeback_default_server or "").rstrip("/")
        return candidate if candidate in configured else None

    @property
    def database_pool(self) -> PoolOptions:
        return PoolOptions(
            self.database_pool_size, self.database_max_overflow, self.database_prepared_statements
        )

    @property
    def base_url(self) -> str:
        """Public base URL without a trailing slash: JWT ``aud`` and card links are built on it."""
        return self.public_base_url.rstrip("/")
