"""FHIR reads with the user's access token: only to the session's own ``iss``, only relative paths.

A 401 triggers one forced refresh and one retry; a second 401 ends the session (relaunch needed).
"""

from __future__ import annotations

import re

import requests

from smart_launch import store
from smart_launch.config import SmartConfig
from smart_launch.refresh import ensure_active
from smart_launch.store import SmartSession

RELATIVE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")


class SessionEnded(Exception):
    """The EHR no longer accepts this session's tokens."""


def read(config: SmartConfig, row: SmartSession, reference: str) -> dict | None:
    """The resource at ``reference`` (e.g. ``Patient/123``) on the session's FHIR server, or None."""
    if not RELATIVE.match(reference) or not row.iss:
        return None
    for attempt in range(2):
        response = requests.get(
            f"{row.iss}/{reference}",
            headers={"Authorization": f"Bearer {row.access_token}", "Accept": "application/fhir+json"},
            timeout=config.timeout,
        )
        if response.status_code != 401:
            return response.json() if response.ok else None
        refreshed = ensure_active(config, row, force=True) if attempt == 0 else None
        if refreshed is None:
            break
        row = refreshed
    store.end_session(config.engine, row.id)
    raise SessionEnded
