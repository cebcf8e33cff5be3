"""Keeping a session's access token valid: refresh with rotation, one refresh at a time per session.

Workers and hosts share the database, so the "one at a time" is a lease on the session row: the
worker that wins it refreshes; the others wait for the new token instead of replaying the old
refresh token (which a rotating EHR would treat as theft and revoke the grant).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

from sqlalchemy import or_, update

from smart_launch import sign_out, store
from smart_launch.config import SmartConfig
from smart_launch.discovery import DiscoveryError
from smart_launch.oauth import TokenError, refresh
from smart_launch.store import SmartSession

log = logging.getLogger(__name__)
EARLY_SECONDS = 10
LEASE_SECONDS = 15
DEFAULT_LIFETIME_SECONDS = 300


def token_expiry(token: dict) -> datetime:
    """When to treat the token as spent; a conservative default if the EHR gives no ``expires_in``."""
    seconds = token.get("expires_in")
    lifetime = int(seconds) if isinstance(seconds, int | float | str) and str(seconds).isdigit() else None
    return store.utcnow() + timedelta(seconds=lifetime or DEFAULT_LIFETIME_SECONDS)


def needs_refresh(row: SmartSession) -> bool:
    expires = row.token_expires_at
    return expires is None or store.aware(expires) - timedelta(seconds=EARLY_SECONDS) <= store.utcnow()


def ensure_active(config: SmartConfig, row: SmartSession, *, force: bool = False) -> SmartSession | None:
    """The session with a usable access token, or None after ending it (no refresh possible)."""
    if not force and not needs_refresh(row):
        return row
    if not row.refresh_token:
        sign_out.end(config, row, sign_out.EHR_ENDED)
        return None
    if _take_lease(config, row):
        return _refresh(config, row)
    return _wait_for_other_refresh(config, row)


def _take_lease(config: SmartConfig, row: SmartSession) -> bool:
    sealed = store.sealed_refresh_token(config.engine, config.sealer, row)
    if sealed is None:
        return False
    now = store.utcnow()
    with config.engine.begin() as connection:
        taken = connection.execute(
            update(SmartSession)
            .where(
                SmartSession.id == row.id,
                SmartSession.refresh_token == sealed,
                or_(SmartSession.refresh_lease_until.is_(None), SmartSession.refresh_lease_until < now),
            )
            .values(refresh_lease_until=now + timedelta(seconds=LEASE_SECONDS))
        ).rowcount
    return taken == 1


def _refresh(config: SmartConfig, row: SmartSession) -> SmartSession | None:
    ehr = config.ehr(row.iss)
    try:
        if ehr is None:
            raise TokenError("the session's EHR is no longer configured")
        token = refresh(
            ehr,
            config.discovery.get(ehr.key),
            key=config.client_key(ehr),
            refresh_token=row.refresh_token or "",
            timeout=config.timeout,
        )
    except (TokenError, DiscoveryError) as error:
        log.info("SMART refresh failed, session ended: %s", error)
        sign_out.end(config, row, sign_out.EHR_ENDED)
        return None
    row.access_token = token["access_token"]
    row.refresh_token = token.get("refresh_token") or row.refresh_token
    row.token_expires_at = token_expiry(token)
    row.scope = token.get("scope") or row.scope
    row.refresh_lease_until = None
    store.save_session(config.engine, config.sealer, row)
    return row


def _wait_for_other_refresh(
    config: SmartConfig, row: SmartSession, timeout: float = LEASE_SECONDS
) -> SmartSession | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.05)
        current = store.load_session_by_id(config.engine, config.sealer, row.id)
        if current is None:
            return None
        if current.refresh_token != row.refresh_token or not needs_refresh(current):
            return current
    return None
