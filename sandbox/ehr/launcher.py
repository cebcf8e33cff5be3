"""EHR launch from the sandbox EHR: the EHR's authorization server gets a launch context (user,
patient, encounter) and answers an opaque ``launch`` id; the app is opened with ``iss`` and that id.

Only the registered app is launched (the chart's button and the cards' ``smart`` links both point
at it): an EHR never hands a launch context to a URL a CDS service made up.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

import requests


class LaunchRefused(Exception):
    """The launch was not allowed (unknown user, unregistered app) or the EHR's server failed."""

    def __init__(self, status: int, message: str, location: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.location = location


@dataclass(frozen=True)
class LaunchUser:
    """A user the demo can act as: the mock EHR's user id and what the header's select shows."""

    id: str
    label: str


@dataclass(frozen=True)
class SmartLauncher:
    launches_url: str
    app_launch_url: str
    users: tuple[LaunchUser, ...]
    timeout: float = 5.0

    def launch_url(
        self,
        user: str,
        patient_id: str,
        encounter_id: str | None,
        app_url: str | None = None,
        app_context: str | None = None,
    ) -> str:
        """The URL to open in the chart's iframe: the app's launch URL with ``iss`` and ``launch``.

        ``app_context`` is a card link's ``appContext``: the EHR hands it to the app in the token
        response, as CDS Hooks says an EHR should."""
        target = app_url or self.app_launch_url
        if not self._registered(target):
            raise LaunchRefused(400, "the link does not point at a SMART app registered with this EHR", "app")
        if user not in {known.id for known in self.users}:
            raise LaunchRefused(400, "choose one of the EHR's users", "user")
        body = {"user": user, "patient": patient_id, "encounter": encounter_id, "need_patient_banner": False}
        if app_context is not None:
            body["appContext"] = app_context
        try:
            response = requests.post(self.launches_url, json=body, timeout=self.timeout)
            response.raise_for_status()
            created = response.json()
            query = urlencode({"iss": created["iss"], "launch": created["launch"]})
        except (requests.RequestException, ValueError, KeyError, TypeError):
            raise LaunchRefused(502, "the EHR's authorization server did not create a launch") from None
        return f"{target}?{query}"

    def _registered(self, url: str) -> bool:
        registered, candidate = urlsplit(self.app_launch_url), urlsplit(url)
        return (candidate.scheme, candidate.netloc, candidate.path) == (
            registered.scheme,
            registered.netloc,
            registered.path,
        ) and not candidate.query
