"""The check's own access to the FHIR server, with the credentials the write-back uses.

The options are those of ``COUNTERSIGN_WRITEBACK_SERVERS``, validated by ``WriteBackServer``. The
check loads patients, acts as the EHR, searches as a CMIO and deletes what it made, which the
write-back never does, so with SMART Backend Services it asks for ``check_scope`` instead of the
write-back's scope: the write-back itself still runs with exactly the scope it would have.
"""

from __future__ import annotations

from pathlib import Path

import requests
from pydantic import ValidationError

from app.settings import WriteBackServer
from app.writeback.backend_services import BackendServicesToken, TokenError, token_source
from app.writeback.fhir_writer import FHIR_JSON

#: SMART v2 scope of the check's own requests: create, read, update, delete and search anything.
CHECK_SCOPE = "system/*.cruds"


class CredentialsError(ValueError):
    """The credential options do not make a valid write-back server entry."""


def write_back_server(
    fhir_url: str,
    auth: str,
    *,
    token: str | None = None,
    client_id: str | None = None,
    token_url: str | None = None,
    private_key: Path | None = None,
    kid: str | None = None,
    algorithm: str = "RS384",
    scope: str | None = None,
) -> WriteBackServer:
    """The server entry Countersign writes back to, checked as the settings would check it."""
    values = {
        "base_url": fhir_url.rstrip("/"),
        "auth": auth,
        "token": token,
        "client_id": client_id,
        "token_url": token_url,
        "private_key_path": private_key,
        "kid": kid,
        "algorithm": algorithm,
    }
    if scope:
        values["scope"] = scope
    try:
        return WriteBackServer.model_validate(values)
    except ValidationError as error:
        messages = "; ".join(str(issue["msg"]).removeprefix("Value error, ") for issue in error.errors())
        raise CredentialsError(messages) from None


class ServerAuth(requests.auth.AuthBase):
    """Puts the server's bearer on every request: the static token, or a Backend Services token
    (fetched once, renewed before it expires, as the write-back's own)."""

    def __init__(self, server: WriteBackServer, scope: str = CHECK_SCOPE) -> None:
        self.server = server
        self.tokens = _token_source(server, scope)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        token = self.bearer()
        if token:
            request.headers["Authorization"] = f"Bearer {token}"
        return request

    def bearer(self) -> str | None:
        """The token to send (None for an open server); raises ``TokenError`` when none is issued."""
        if self.server.auth == "bearer":
            return self.server.token
        return self.tokens.bearer() if self.tokens else None


def fhir_session(server: WriteBackServer, scope: str = CHECK_SCOPE) -> requests.Session:
    """A session that speaks FHIR JSON to ``server`` with its credentials."""
    session = requests.Session()
    session.auth = ServerAuth(server, scope)
    session.headers.update({"Accept": FHIR_JSON, "Content-Type": FHIR_JSON})
    return session


def bearer_of(session: requests.Session) -> str | None:
    """The bearer ``session`` sends, for the EHR's prefetch reads (which take a token); None when
    none is issued, so that those reads fail with the server's 401 and the check reports it."""
    if not isinstance(session.auth, ServerAuth):
        return None
    try:
        return session.auth.bearer()
    except TokenError:
        return None


def _token_source(server: WriteBackServer, scope: str) -> BackendServicesToken | None:
    if server.auth != "backend-services":
        return None
    return token_source(server.model_copy(update={"scope": scope}))
