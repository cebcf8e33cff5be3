"""The real HAPI FHIR JPA server for tests: a session fixture; without the jar it skips (fails under CI)."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sandbox.hapi_server import HapiServer, unavailable_reason


@pytest.fixture(scope="session")
def hapi_server() -> Iterator[str]:
    """Base URL of a fresh HAPI FHIR R4 JPA server (empty in-memory database) for the session."""
    reason = unavailable_reason()
    if reason:
        unavailable = pytest.fail if os.environ.get("CI") == "true" else pytest.skip
        unavailable(f"HAPI FHIR server unavailable: {reason}")
    with HapiServer() as server:
        yield server.base_url
