"""The mock EHR's memory: clients, users, launch contexts, codes, tokens, and a request log."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field

from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oidc.core import AuthorizationCodeMixin
from joserfc.jwk import RSAKey

SIGNING_KID = "mock-ehr-rs384"
#: Authlib's server-side name for ``private_key_jwt``.
ASSERTION_METHOD = JWTBearerClientAssertion.CLIENT_AUTH_METHOD


@dataclass
class MockUser:
    id: str
    fhir_user: str
    name: str


@dataclass
class MockClient(ClientMixin):
    client_id: str
    redirect_uris: list[str]
    secret: str | None = None
    jwks_uri: str | None = None
    """Registered for ``private_key_jwt``: where the mock fetches the client's public keys."""

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return scope

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return self.secret is not None and secrets.compare_digest(client_secret, self.secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        """What the registration allows: a secret, a JWKS URL, both, or neither (a public client)."""
        allowed = {"client_secret_basic"} if self.secret else set()
        if self.jwks_uri:
            allowed.add(ASSERTION_METHOD)
        return method in (allowed or {"none"})

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in ("authorization_code", "refresh_token")


@dataclass
class LaunchContext:
    user_id: str
    patient: str | None = None
    encounter: str | None = None
    fhir_context: list[dict] = field(default_factory=list)
    need_patient_banner: bool = True
    app_context: str | None = None
    used: bool = False


@dataclass
class AuthCode(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user_id: str
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    context: dict
    created: float = field(default_factory=time.time)

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return int(self.created)

    def get_acr(self) -> None:
        return None

    def get_amr(self) -> None:
        return None


@dataclass
class IssuedToken(TokenMixin):
    access_token: str
    refresh_token: str | None
    client_id: str
    scope: str
    user_id: str
    expires_in: int
    issued_at: float = field(default_factory=time.time)
    revoked: bool = False

    def check_client(self, client: MockClient) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.expires_in

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.expires_in

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> str:
        return self.user_id

    def get_client(self) -> str:
        return self.client_id


@dataclass
class Knobs:
    """What a test may change to provoke the app: lifetimes, missing context, failures, forgeries."""

    expires_in: int = 3600
    omit_patient: bool = False
    refuse_refresh: bool = False
    tamper_id_token: bool = False
    advertise_s256: bool = True
    advertise_revocation: bool = True
    advertise_private_key_jwt: bool = True


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    form: dict[str, list[str]]
    headers: dict[str, str]


class MockState:
    """Everything the mock remembers; one lock, because the server is threaded."""

    def __init__(self, fhir_upstream: str, clients: list[MockClient], users: list[MockUser]) -> None:
        self.fhir_upstream = fhir_upstream.rstrip("/")
        self.public_url = ""
        self.clients = {client.client_id: client for client in clients}
        self.users = {user.id: user for user in users}
        self.launches: dict[str, LaunchContext] = {}
        self.codes: dict[str, AuthCode] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.refresh_tokens: dict[str, IssuedToken] = {}
        self.requests: list[RecordedRequest] = []
        self.refresh_reuse = 0
        self.revoked: list[str] = []
        self.assertion_jtis: set[str] = set()
        self.knobs = Knobs()
        self.key = RSAKey.generate_key(2048, parameters={"kid": SIGNING_KID, "alg": "RS384", "use": "sig"})
        self.lock = threading.RLock()

    @property
    def fhir_base(self) -> str:
        """The ``iss`` apps are launched with: this mock's own FHIR endpoint (a proxy)."""
        return f"{self.public_url}/fhir"

    def new_launch(self, context: LaunchContext) -> str:
        launch_id = secrets.token_urlsafe(24)
        with self.lock:
            self.launches[launch_id] = context
        return launch_id

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self.lock:
            return [recorded for recorded in self.requests if recorded.path == path]
