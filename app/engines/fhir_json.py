"""Reading FHIR resources as plain JSON, defensively: engines see whatever an EHR sent.

Every engine reads the same shapes (codings, statuses, dates, medication concepts, lab results),
so the tolerant readers live here once. None of them raises on malformed input; they answer None
or an empty list, and the engine simply has less evidence.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
VOID_STATUSES = frozenset({"entered-in-error", "cancelled"})


def reference(resource: dict) -> str:
    return f"{resource.get('resourceType')}/{resource.get('id')}"


def codings(concept: object) -> list[dict]:
    found = concept.get("coding") if isinstance(concept, dict) else None
    return [c for c in found if isinstance(c, dict)] if isinstance(found, list) else []


def status_code(concept: object) -> str | None:
    found = codings(concept)
    return found[0].get("code") if found else None


def has_code(concept: object, system: str, codes: Iterable[str]) -> bool:
    wanted = set(codes)
    return any(c.get("system") == system and c.get("code") in wanted for c in codings(concept))


def concept_text(concept: dict) -> str:
    texts = [concept.get("text"), *(c.get("display") for c in codings(concept))]
    return " ".join(t for t in texts if isinstance(t, str))


def word_pattern(names: Iterable[str]) -> re.Pattern[str]:
    """Whole words (a plural "s" allowed), longest first, case-insensitive."""
    alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    return re.compile(rf"\b({alternatives})s?\b", re.IGNORECASE)


@dataclass(frozen=True)
class DrugNames:
    """Recognises drugs in a medication concept: by RxNorm code, then by whole-word name in its text
    and displays. Built once per engine (compiling the name pattern is the expensive part)."""

    by_code: dict[str, str]
    words: re.Pattern[str]

    @classmethod
    def of(cls, codes_by_drug: Mapping[str, Iterable[str]]) -> DrugNames:
        by_code = {code: drug for drug, codes in codes_by_drug.items() for code in codes}
        return cls(by_code, word_pattern(codes_by_drug))

    def in_concept(self, concept: dict) -> tuple[str, ...]:
        coded = [
            self.by_code[c["code"]]
            for c in codings(concept)
            if c.get("system") == RXNORM and c.get("code") in self.by_code
        ]
        named = [match.lower() for match in self.words.findall(concept_text(concept))]
        return tuple(dict.fromkeys([*coded, *named]))


def parse_datetime(raw: object) -> datetime | None:
    """A FHIR date or dateTime (year and month precision included), as an aware datetime."""
    if not isinstance(raw, str):
        return None
    try:
        parsed = datetime.fromisoformat(raw + {4: "-01-01", 7: "-01"}.get(len(raw), ""))
    except ValueError:
        return None
    return aware(parsed)


def aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def age_in_years(patient: dict | None, today: date) -> int | None:
    birth = parse_datetime((patient or {}).get("birthDate"))
    if birth is None:
        return None
    born = birth.date()
    return today.year - born.year - ((today.month, today.day) < (born.month, born.day))


def observed_at(observation: dict) -> datetime | None:
    period = observation.get("effectivePeriod") or {}
    raw = (
        observation.get("effectiveDateTime")
        or observation.get("effectiveInstant")
        or period.get("end")
        or period.get("start")
        or observation.get("issued")
    )
    return parse_datetime(raw)


def medication_index(resources: Iterable[dict]) -> dict[str, dict]:
    """Medication resources a ``medicationReference`` may point at, by "Medication/id"."""
    return {reference(m): m for m in resources if m.get("resourceType") == "Medication"}


def medication_concept(request: dict, medications: dict[str, dict]) -> dict | None:
    """The drug's CodeableConcept, inline or behind a reference; None when it cannot be resolved."""
    concept = request.get("medicationCodeableConcept")
    if isinstance(concept, dict):
        return concept
    target_reference = (request.get("medicationReference") or {}).get("reference")
    if not isinstance(target_reference, str):
        return None
    if target_reference.startswith("#"):
        contained = [r for r in request.get("contained") or () if isinstance(r, dict)]
        target = next((r for r in contained if r.get("id") == target_reference[1:]), None)
    else:
        target = medications.get("/".join(target_reference.split("/")[-2:]))
    code = (target or {}).get("code")
    return code if isinstance(code, dict) else None


@dataclass(frozen=True)
class LabResult:
    """One numeric result of a recognised test, in the unit the engine asked for."""

    reference: str
    value: float
    when: datetime

    @property
    def day(self) -> str:
        return self.when.date().isoformat()


def lab_results(
    observations: Iterable[dict], loinc_codes: frozenset[str], unit_prefixes: tuple[str, ...]
) -> list[LabResult]:
    """Valid results of the given tests whose unit starts with one of ``unit_prefixes``, oldest first.

    A result without a unit is taken to be in the first unit; any other unit is not used, since a
    wrong unit read as the right one would be worse than no result.
    """
    found = []
    for observation in observations:
        if observation.get("status") in VOID_STATUSES or not _is_test(observation, loinc_codes):
            continue
        value = _quantity_value(observation, unit_prefixes)
        when = observed_at(observation)
        if value is not None and when is not None:
            found.append(LabResult(reference(observation), value, when))
    return sorted(found, key=lambda result: result.when)


def _is_test(observation: dict, loinc_codes: frozenset[str]) -> bool:
    """Called for every prefetched observation, so a plain loop rather than the generic helpers."""
    code = observation.get("code")
    found = code.get("coding") if isinstance(code, dict) else None
    for coding in found if isinstance(found, list) else ():
        if not isinstance(coding, dict) or coding.get("code") not in loinc_codes:
            continue
        if coding.get("system", LOINC) == LOINC:
            return True
    return False


def _quantity_value(observation: dict, unit_prefixes: tuple[str, ...]) -> float | None:
    quantity = observation.get("valueQuantity") or {}
    value = quantity.get("value")
    unit = str(quantity.get("code") or quantity.get("unit") or unit_prefixes[0]).lower().replace(" ", "")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        return None
    return float(value) if unit.startswith(unit_prefixes) else None
