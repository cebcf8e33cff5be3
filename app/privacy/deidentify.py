"""De-identification of a patient's resources before anything leaves Countersign, and the way back.

Names, addresses, telecom, photos, contacts, identifiers, narrative, extensions and reference
displays are removed; resource ids and references become pseudonyms; every date moves by one
offset per patient (an HMAC of the patient id under a secret setting), so intervals between
events stay true and the same patient always gets the same shift; free text is scrubbed of the
patient's own known names, identifiers, phone numbers, e-mail and address parts, and of
pattern-based identifiers (phone numbers, e-mail, SSN- and MRN-like numbers, dates).

The map back (``Reidentifier``) lives in memory for one call and never leaves the process.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

REMOVED_KEYS = frozenset(
    {
        "name",
        "address",
        "telecom",
        "photo",
        "contact",
        "identifier",
        "extension",
        "modifierExtension",
        "presentedForm",
    }
)
STRUCTURAL_KEYS = frozenset(
    {"system", "code", "url", "resourceType", "status", "unit", "use", "profile", "contentType", "language"}
)
PERSON_TYPES = frozenset({"Patient", "RelatedPerson", "Practitioner", "Person"})
MIN_SHIFT_DAYS, SHIFT_RANGE_DAYS = 30, 336
MIN_NAME_LENGTH = 2
MIN_ID_LENGTH = 4

_FHIR_DATE = re.compile(r"^(\d{4})-(\d{2})(?:-(\d{2}))?(T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?$")
_ISO_DATE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})\b")
_US_DATE = re.compile(r"\b(\d{1,2})/(\d{1,2})/(\d{4}|\d{2})\b")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WORD_DATE = re.compile(
    rf"\b(?:(\d{{1,2}})\s+)?({'|'.join(_MONTHS)})[a-z]*\.?\s+"
    r"(?:(\d{1,2})(?:st|nd|rd|th)?,?\s+)?(\d{4})\b",
    re.IGNORECASE,
)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_SSN = re.compile(r"\b\d{3}-\d{2}-\d{4}\b")
_PHONE = re.compile(r"(?<![\w-])(?:\+?1[\s.-]?)?\(?\d{3}\)?[\s.-]?\d{3}[\s.-]\d{4}\b")
_MRN = re.compile(r"\b(?:MRN|MR#|medical record(?: number)?)[\s:#-]*[A-Z0-9-]{4,}\b|\b\d{7,}\b", re.I)
_TOKEN = re.compile(r"\[(?:NAME|ID|PHONE|EMAIL|ADDRESS|SSN)-\d+\]")
_PSEUDONYM = re.compile(r"\b([A-Z][A-Za-z]+)/(ref-\d+)\b")


def shift_days(secret: bytes, patient_id: str) -> int:
    """Days every date of this patient moves back: 30-365, fixed for a patient and a secret."""
    digest = hmac.new(secret, patient_id.encode(), hashlib.sha256).digest()
    return MIN_SHIFT_DAYS + int.from_bytes(digest[:8], "big") % SHIFT_RANGE_DAYS


@dataclass
class Reidentifier:
    """What was replaced, for restoring the model's answer inside Countersign (memory only)."""

    shift: int
    tokens: dict[str, str] = field(default_factory=dict)
    references: dict[str, str] = field(default_factory=dict)
    _token_of: dict[tuple[str, str], str] = field(default_factory=dict)
    _pseudonym_of: dict[str, str] = field(default_factory=dict)

    def token(self, kind: str, original: str) -> str:
        key = (kind, original.casefold())
        if key not in self._token_of:
            self._token_of[key] = f"[{kind}-{len(self._token_of) + 1}]"
            self.tokens[self._token_of[key]] = original
        return self._token_of[key]

    def pseudonym(self, reference: str) -> str:
        """``Condition/abc`` becomes ``Condition/ref-3``; an unparseable reference loses its type."""
        if reference not in self._pseudonym_of:
            parts = reference.rstrip("/").split("/")
            kind = parts[-2] if len(parts) >= 2 and parts[-2][:1].isupper() else "Resource"
            alias = f"{kind}/ref-{len(self._pseudonym_of) + 1}"
            self._pseudonym_of[reference] = alias
            self.references[alias] = "/".join(parts[-2:]) if kind != "Resource" else reference
        return self._pseudonym_of[reference]

    def original_reference(self, alias: str) -> str | None:
        return self.references.get(alias.strip())

    def restore(self, text: str) -> str:
        """Dates back first (a restored identifier may look like a date), then tokens, then references."""
        text = _ISO_DATE.sub(lambda m: _shift_iso(m, self.shift), text)
        text = _TOKEN.sub(lambda m: self.tokens.get(m.group(0), m.group(0)), text)
        return _PSEUDONYM.sub(lambda m: self.references.get(m.group(0), m.group(0)), text)


@dataclass(frozen=True)
class Deidentifier:
    """De-identifies one patient's resources with a secret that fixes the per-patient date shift."""

    secret: bytes

    def deidentify(self, patient_id: str, resources: Iterable[dict]) -> tuple[list[dict], Reidentifier]:
        resources = list(resources)
        reidentifier = Reidentifier(shift=shift_days(self.secret, patient_id))
        scrub = _scrubber(_known_identifiers(resources), reidentifier)
        cleaned = [_resource(r, reidentifier, scrub) for r in resources]
        return cleaned, reidentifier


# Walking the resources


def _resource(resource: dict, reid: Reidentifier, scrub: Callable[[str], str]) -> dict:
    cleaned = _value(resource, None, reid, scrub)
    if isinstance(resource.get("id"), str):
        cleaned["id"] = reid.pseudonym(f"{resource.get('resourceType')}/{resource['id']}").split("/")[1]
    return cleaned


def _value(value: object, key: str | None, reid: Reidentifier, scrub: Callable[[str], str]) -> object:
    if isinstance(value, dict):
        return _object(value, reid, scrub)
    if isinstance(value, list):
        return [_value(item, key, reid, scrub) for item in value]
    if isinstance(value, str):
        return _string(value, key, reid, scrub)
    return value


def _object(obj: dict, reid: Reidentifier, scrub: Callable[[str], str]) -> dict:
    is_reference = isinstance(obj.get("reference"), str)
    cleaned = {}
    for key, item in obj.items():
        if key in REMOVED_KEYS or (key == "text" and isinstance(item, dict)):
            continue
        if is_reference and key == "display":
            continue
        cleaned[key] = _value(item, key, reid, scrub)
    return cleaned


def _string(value: str, key: str | None, reid: Reidentifier, scrub: Callable[[str], str]) -> str:
    if key == "reference":
        return value if value.startswith("#") else reid.pseudonym(value)
    if key in STRUCTURAL_KEYS:
        return value
    match = _FHIR_DATE.match(value)
    shifted = _shift_fhir_date(match, reid.shift) if match is not None else None
    return shifted if shifted is not None else scrub(value)


# Dates


def _shift_fhir_date(match: re.Match[str], shift: int) -> str | None:
    """A FHIR date or dateTime moved back, precision kept (a year-month moves by its mid-month)."""
    year, month, day, time = match.groups()
    try:
        moved = date(int(year), int(month), int(day or 15)) - timedelta(days=shift)
    except ValueError:
        return None
    if day is None:
        return moved.isoformat()[:7]
    return moved.isoformat() + (time or "")


def _shift_iso(match: re.Match[str], shift: int, back: bool = True) -> str:
    """Undo (``back``) the shift of an ISO date found in text; an impossible date is left alone."""
    try:
        found = date(int(match.group(1)), int(match.group(2)), int(match.group(3)))
    except ValueError:
        return match.group(0)
    return (found + timedelta(days=shift if back else -shift)).isoformat()


def _shifted_text_date(year: int, month: int, day: int, shift: int) -> str | None:
    try:
        return (date(year, month, day) - timedelta(days=shift)).isoformat()
    except ValueError:
        return None


def _shift_dates_in_text(text: str, shift: int) -> str:
    """Dates written as ISO, US (m/d/y) or with a month name become shifted ISO dates."""
    text = _ISO_DATE.sub(lambda m: _shift_iso(m, shift, back=False), text)

    def us(match: re.Match[str]) -> str:
        month, day, year = (int(g) for g in match.groups())
        if year < 100:
            year += 2000 if year <= date.today().year % 100 else 1900
        return _shifted_text_date(year, month, day, shift) or match.group(0)

    def worded(match: re.Match[str]) -> str:
        day = int(match.group(1) or match.group(3) or 15)
        month = _MONTHS.index(match.group(2).lower()[:3]) + 1
        return _shifted_text_date(int(match.group(4)), month, day, shift) or match.group(0)

    return _WORD_DATE.sub(worded, _US_DATE.sub(us, text))


# Free text


@dataclass
class KnownIdentifiers:
    """What the input itself says identifies the patient (and other people named in it)."""

    names: set[str] = field(default_factory=set)
    ids: set[str] = field(default_factory=set)
    phones: set[str] = field(default_factory=set)
    emails: set[str] = field(default_factory=set)
    address_parts: set[str] = field(default_factory=set)


def _known_identifiers(resources: list[dict]) -> KnownIdentifiers:
    known = KnownIdentifiers()
    for resource in resources:
        if resource.get("resourceType") not in PERSON_TYPES:
            continue
        people = [resource, *_items(resource.get("contact"))]
        for person in people:
            _collect_person(person, known)
        identifiers = _items(resource.get("identifier"))
        known.ids |= {i["value"] for i in identifiers if isinstance(i.get("value"), str)}
        if isinstance(resource.get("id"), str) and len(resource["id"]) >= MIN_ID_LENGTH:
            known.ids.add(resource["id"])
    return known


def _collect_person(person: dict, known: KnownIdentifiers) -> None:
    for name in _items(person.get("name")):
        parts = [*_strings(name.get("given")), *_strings([name.get("family")]), *_strings([name.get("text")])]
        known.names |= {word for part in parts for word in part.split() if len(word) >= MIN_NAME_LENGTH}
    for telecom in _items(person.get("telecom")):
        value = telecom.get("value")
        if isinstance(value, str):
            (known.emails if telecom.get("system") == "email" else known.phones).add(value)
    for address in _items(person.get("address")):
        fields = [*_strings(address.get("line")), *_strings([address.get(k) for k in ("city", "postalCode")])]
        known.address_parts |= {f for f in fields if len(f) >= MIN_NAME_LENGTH}


def _scrubber(known: KnownIdentifiers, reid: Reidentifier) -> Callable[[str], str]:
    """Known values first (longest first, whole words), then patterns, then dates."""
    replacements: list[tuple[re.Pattern[str], str]] = [
        *((_literal(v), "ADDRESS") for v in sorted(known.address_parts, key=len, reverse=True)),
        *((_literal(v), "EMAIL") for v in known.emails),
        *((_literal(v), "ID") for v in sorted(known.ids, key=len, reverse=True)),
        *((_digits(v), "PHONE") for v in known.phones if _digit_count(v) >= 7),
        *((_literal(v), "NAME") for v in sorted(known.names, key=len, reverse=True)),
        (_EMAIL, "EMAIL"),
        (_SSN, "SSN"),
        (_PHONE, "PHONE"),
        (_MRN, "ID"),
    ]

    def scrub(text: str) -> str:
        for pattern, kind in replacements:
            text = pattern.sub(lambda m, kind=kind: reid.token(kind, m.group(0)), text)
        return _shift_dates_in_text(text, reid.shift)

    return scrub


def _literal(value: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(value)}(?!\w)", re.IGNORECASE)


def _digits(phone: str) -> re.Pattern[str]:
    """A known phone number however it is punctuated in the text."""
    digits = [d for d in phone if d.isdigit()]
    return re.compile(r"(?<![\d(])\(?" + r"[\s().+-]*".join(digits) + r"(?!\d)")


def _digit_count(value: str) -> int:
    return sum(ch.isdigit() for ch in value)


def _items(value: object) -> list[dict]:
    """The objects of a FHIR element that may be one object (``contact.name``) or a list of them."""
    if isinstance(value, dict):
        return [value]
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _strings(values: object) -> list[str]:
    return [v for v in values if isinstance(v, str)] if isinstance(values, list) else []
