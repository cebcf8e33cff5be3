"""The demo's SMART side: the mock EHR authorization server in front of the FHIR test server, its
two users (the synthetic cohort's clinician and CMIO), and Countersign's registration with it.

``countersign demo`` and the browser journeys build the same composition from here.
"""

from __future__ import annotations

from app.mock_ehr_auth import MockClient, MockEhr, MockUser
from app.sandbox_ehr.launcher import LaunchUser, SmartLauncher
from app.sandbox_ehr.synthetic.cohort import CLINICIAN, CMIO
from smart_launch.config import CALLBACK_PATH
from smart_launch.tenants import Role, SmartEhr

CLIENT_ID = "countersign-demo"
USERS = (
    MockUser("clinician", CLINICIAN, "Dr Jordan Hale (clinician)"),
    MockUser("cmio", CMIO, "Dr Ama Osei (CMIO)"),
)
ROLES: dict[str, Role] = {CLINICIAN: "clinician", CMIO: "cmio"}


def mock_ehr(
    fhir_url: str, app_base_url: str, secret: str, host: str = "127.0.0.1", port: int = 0
) -> MockEhr:
    """The EHR's authorization server, with Countersign registered as a confidential client."""
    client = MockClient(CLIENT_ID, [f"{app_base_url.rstrip('/')}{CALLBACK_PATH}"], secret)
    return MockEhr(fhir_url, [client], list(USERS), host, port)


def smart_ehr(ehr: MockEhr, secret: str, ehr_origin: str) -> SmartEhr:
    """Countersign's ``COUNTERSIGN_SMART_EHRS`` entry; the sandbox EHR's origin may frame the app."""
    return SmartEhr(
        iss=ehr.iss, client_id=CLIENT_ID, client_secret=secret, roles=ROLES, frame_ancestors=[ehr_origin]
    )


def launcher(ehr: MockEhr, app_base_url: str) -> SmartLauncher:
    """What the sandbox EHR needs to launch Countersign: the mock's launch endpoint and the app URL."""
    users = tuple(LaunchUser(user.id, user.name) for user in USERS)
    return SmartLauncher(f"{ehr.state.public_url}/launches", f"{app_base_url.rstrip('/')}/app/launch", users)
