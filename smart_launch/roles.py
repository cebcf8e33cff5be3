"""Who the user is to Countersign: the ``fhirUser`` from a verified id_token, mapped to a role.

Only Practitioner and PractitionerRole users can hold a role; the mapping is per EHR, from
configuration, because EHR role codes are local. An unmapped user has no role (fail closed).
"""

from __future__ import annotations

import re

from smart_launch.tenants import Role, SmartEhr

ROLES: tuple[Role, ...] = ("clinician", "cmio", "safety-officer", "auditor")
GOVERNORS: tuple[Role, ...] = ("cmio", "safety-officer")
PRACTITIONER = re.compile(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$")


def relative_user(fhir_user: str | None, base: str) -> str | None:
    """``Practitioner/123`` from a relative or same-base absolute ``fhirUser``; None for other servers."""
    if not fhir_user:
        return None
    relative = fhir_user.removeprefix(f"{base}/") if fhir_user.startswith(f"{base}/") else fhir_user
    return relative if PRACTITIONER.match(relative) else None


def role_of(ehr: SmartEhr, fhir_user: str | None) -> Role | None:
    relative = relative_user(fhir_user, ehr.key)
    return ehr.roles.get(relative) if relative else None
