"""The demo's SMART side: the mock EHR authorization server in front of the FHIR test server, its
users (the synthetic cohort's clinician, CMIO and safety officer), and Countersign's registration with it: a
client secret and the app's JWKS URL, so that either ``client_secret_basic`` or ``private_key_jwt``
(the demo's ES384 key, kept in the instance folder) signs in.

``countersign demo`` runs it as a child process (``python -m sandbox.demo_smart``; the client secret
comes in the environment, never on the command line); the browser journey runs it in a thread.
Both build the same composition from here.
"""

from __future__ import annotations

import argparse
import logging
import os
import threading
from contextlib import suppress
from pathlib import Path

from app.web.jwks import JWKS_PATH
from sandbox.demo_client import ensure_key
from sandbox.ehr.launcher import LaunchUser, SmartLauncher
from sandbox.ehr.synthetic.cohort import CLINICIAN, CMIO, SAFETY_OFFICER
from sandbox.mock_ehr_auth import MockClient, MockEhr, MockUser
from smart_launch.client_auth import ClientKey
from smart_launch.config import CALLBACK_PATH
from smart_launch.tenants import Role, SmartEhr, TokenEndpointAuthMethod

CLIENT_ID = "countersign-demo"
CLIENT_KID = "countersign-demo-smart-es384"
CLIENT_KEY_FILE = "smart-client-es384.pem"
SECRET_ENV = "COUNTERSIGN_DEMO_SMART_SECRET"
USERS = (
    MockUser("clinician", CLINICIAN, "Dr Jordan Hale (clinician)"),
    MockUser("cmio", CMIO, "Dr Ama Osei (CMIO)"),
    MockUser("safety-officer", SAFETY_OFFICER, "Dr Sam Rivera (safety officer)"),
)
ROLES: dict[str, Role] = {CLINICIAN: "clinician", CMIO: "cmio", SAFETY_OFFICER: "safety-officer"}


def mock_ehr(
    fhir_url: str, app_base_url: str, secret: str, host: str = "127.0.0.1", port: int = 0
) -> MockEhr:
    """The EHR's authorization server, with Countersign registered as a confidential client."""
    app_url = app_base_url.rstrip("/")
    client = MockClient(CLIENT_ID, [f"{app_url}{CALLBACK_PATH}"], secret, jwks_uri=f"{app_url}{JWKS_PATH}")
    return MockEhr(fhir_url, [client], list(USERS), host, port)


def iss(auth_url: str) -> str:
    """The FHIR base apps are launched with: the mock EHR's FHIR proxy (``MockState.fhir_base``)."""
    return f"{auth_url.rstrip('/')}/fhir"


def smart_ehr(
    auth_url: str,
    secret: str,
    ehr_origin: str,
    auth_method: TokenEndpointAuthMethod = "client_secret_basic",
) -> SmartEhr:
    """Countersign's ``COUNTERSIGN_SMART_EHRS`` entry; the sandbox EHR's origin may frame the app."""
    return SmartEhr(
        iss=iss(auth_url),
        client_id=CLIENT_ID,
        client_secret=secret,
        token_endpoint_auth_method=auth_method,
        client_kid=CLIENT_KID,
        roles=ROLES,
        frame_ancestors=[ehr_origin],
    )


def client_key(directory: Path) -> ClientKey:
    """The demo's ``private_key_jwt`` key: made once in ``directory`` (mode 0600), then reused."""
    return ClientKey(kid=CLIENT_KID, path=ensure_key(directory, CLIENT_KEY_FILE), algorithm="ES384")


def launcher(auth_url: str, app_base_url: str) -> SmartLauncher:
    """What the sandbox EHR needs to launch Countersign: the mock's launch endpoint and the app URL."""
    users = tuple(LaunchUser(user.id, user.name) for user in USERS)
    return SmartLauncher(f"{auth_url.rstrip('/')}/launches", f"{app_base_url.rstrip('/')}/app/launch", users)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The demo's mock EHR authorization server.")
    parser.add_argument("--fhir", required=True, help="the FHIR server it fronts")
    parser.add_argument("--app", required=True, help="Countersign's public base URL")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log: URLs carry codes and launch ids
    with (
        suppress(KeyboardInterrupt),  # Ctrl-C reaches the whole process group; the demo reports the stop
        mock_ehr(arguments.fhir, arguments.app, os.environ[SECRET_ENV], arguments.host, arguments.port),
    ):
        threading.Event().wait()


if __name__ == "__main__":
    main()
