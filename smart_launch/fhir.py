"""FHIR reads and searches with the user's access token: only to the session's own ``iss``, only
relative paths. A 401 triggers one forced refresh and one retry; a second 401 ends the session
(relaunch needed).
"""

from __future__ import annotations

import re

import requests

from smart_launch import sign_out
from smart_launch.config import SmartConfig
from smart_launch.refresh import ensure_active
from smart_launch.store import SmartSession

RELATIVE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")
RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")


class SessionEnded(Exception):
    """The EHR no longer accepts this session's tokens."""


def read(config: SmartConfig, row: SmartSession, reference: str) -> dict | None:
    """The resource at ``reference`` (e.g. ``Patient/123``) on the session's FHIR server, or None."""
    if not RELATIVE.match(reference) or not row.iss:
        return None
    return _get(config, row, reference, None)


def search(config: SmartConfig, row: SmartSession, resource_type: str, params: dict[str, str]) -> list[dict]:
    """The resources of a search (first page) on the session's FHIR server; [] if it fails."""
    if not RESOURCE_TYPE.match(resource_type) or not row.iss:
        return []
    bundle = _get(config, row, resource_type, params) or {}
    return [e["resource"] for e in bundle.get("entry", []) if isinstance(e.get("resource"), dict)]


def _get(config: SmartConfig, row: SmartSession, path: str, params: dict[str, str] | None) -> dict | None:
    for attempt in range(2):
        response = requests.get(
            f"{row.iss}/{path}",
            params=params,
            headers={
                "Authorization": f"Bearer {row.access_token}",
                "Accept": "application/fhir+json",
                # HAPI answers a search repeated within 60 s from its cache: a CMIO who looked
                # while the write-back was queued would not see it land on reloading.
                "Cache-Control": "no-cache",
            },
            timeout=config.timeout,
        )
        if response.status_code != 401:
            return response.json() if response.ok else None
        refreshed = ensure_active(config, row, force=True) if attempt == 0 else None
        if refreshed is None:
            break
        row = refreshed
    sign_out.end(config, row, sign_out.EHR_ENDED)
    raise SessionEnded
