"""A server's OperationOutcome, reduced to what an operator may read without reading PHI.

A FHIR server's ``diagnostics`` and ``details.text`` may echo what it was sent: names, identifiers,
birth dates, a whole resource. The full OperationOutcome stays on the message in the database,
which is as protected as the records themselves; what ``countersign outbox list`` prints is:

- each issue's ``severity`` and ``code`` when they are in FHIR's closed value sets;
- the codes of ``details.coding`` when they look like codes;
- ``expression`` / ``location`` paths and the free text, with every word masked (``…``) unless it
  is a FHIR type or element name, a word of an error message's grammar (a fixed list), an error
  code (``HAPI-0450``) or an exception type; quoted strings and anything with a digit are masked
  whole (dates, identifiers, phone numbers), indices of a path excepted; cut to 160 characters.

A name, a date or an identifier therefore never reaches the terminal, even when a server puts it
in an unexpected place; the price is that some harmless words are masked too.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from dataclasses import asdict, dataclass
from functools import cache

import fhir.resources.R4B as fhir_r4b
from pydantic import BaseModel

MASK = "…"
MAX_TEXT = 160
MAX_INPUT = 2000
SEVERITIES = frozenset({"fatal", "error", "warning", "information"})
ISSUE_TYPE_CODES = (
    "invalid structure required value invariant security login unknown expired forbidden suppressed "
    "processing not-supported duplicate multiple-matches not-found deleted too-long code-invalid "
    "extension too-costly business-rule conflict transient lock-error no-store exception timeout "
    "incomplete throttled informational"
)
#: Words of servers' error messages (and of our own) that carry no data.
GRAMMAR_WORDS = (
    "a an the this that these those it its is are was were be been being has have had do does did "
    "not no nor and or but if then else of in on at to for from by with without as into onto per "
    "than via which where when while must should shall cannot could "
    "only also any all each every some none more most less least both either "
    "neither other another such following below above before after between within "
    "failed fail fails failure invalid unable unknown error errors warning fatal information "
    "severity issue issues resource resources bundle transaction batch conditional create created "
    "update updated delete deleted read search match matches matched matching multiple duplicate "
    "missing constraint constraints reference references referenced element elements value values "
    "profile profiles validation validate validated unexpected expected found exist exists existing "
    "required allowed permitted supported unsupported request requests response server internal "
    "timeout timed out version versions conflict rule rules entry entries code codes system systems "
    "unrecognized unrecognised processing process parse parsing json xml http https fhir hapi "
    "precondition ifnoneexist if-none-exist contains contain contained type types id ids identifier "
    "identifiers empty null blank minimum maximum min max cardinality invariant slice slicing "
    "extension extensions url uri format length too long short forbidden denied permission "
    "authorized unauthorized authentication token scope scopes access endpoint unreachable "
    "connection refused reset accepted record expressed yet credentials outbox write-back "
    "available unavailable service temporarily later retry try again rate limit exceeded busy "
    "please body incorrect specified defined path date greater equal wrong bad malformed "
    "modified"
)
ISSUE_TYPES = frozenset(ISSUE_TYPE_CODES.split())
GRAMMAR = frozenset(GRAMMAR_WORDS.split())
#: Acronyms that pass in upper case (grammar words pass capitalised only where a sentence starts).
ACRONYMS = frozenset({"FHIR", "HAPI", "HTTP", "HTTPS", "JSON", "XML", "URL", "URI", "ID"})
ERROR_CODE = re.compile(r"^[A-Z][A-Z0-9]{1,9}-\d{2,6}:?$")
EXCEPTION_TYPE = re.compile(r"^[A-Z][A-Za-z]+(?:Error|Exception|Timeout)$")
CODE_LIKE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,63}$")
QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|`[^`]*`")
WORD = re.compile(r"[\w\-\[\]]+(?:\.[\w\-\[\]]+)*")
INDEX = re.compile(r"\[\d{1,4}\]")


@dataclass(frozen=True)
class IssueSummary:
    severity: str
    code: str
    details: tuple[str, ...]
    expression: tuple[str, ...]
    diagnostics: str

    def as_json(self) -> dict:
        return asdict(self) | {"details": list(self.details), "expression": list(self.expression)}

    def line(self) -> str:
        where = f" at {', '.join(self.expression)}" if self.expression else ""
        codes = f" [{', '.join(self.details)}]" if self.details else ""
        text = f": {self.diagnostics}" if self.diagnostics else ""
        return f"{self.severity}/{self.code}{codes}{where}{text}"


def summarize(outcome: dict | None) -> list[IssueSummary]:
    """The issues of an OperationOutcome, each reduced as the module docstring says."""
    if not isinstance(outcome, dict) or outcome.get("resourceType") != "OperationOutcome":
        return []
    issues = outcome.get("issue")
    return [_issue(issue) for issue in issues if isinstance(issue, dict)] if isinstance(issues, list) else []


def _issue(issue: dict) -> IssueSummary:
    details = issue.get("details") if isinstance(issue.get("details"), dict) else {}
    codings = details.get("coding") if isinstance(details.get("coding"), list) else []
    paths = [*_strings(issue.get("expression")), *_strings(issue.get("location"))]
    text = " ".join(t for t in (_string(details.get("text")), _string(issue.get("diagnostics"))) if t)
    return IssueSummary(
        severity=_closed(issue.get("severity"), SEVERITIES),
        code=_closed(issue.get("code"), ISSUE_TYPES),
        details=tuple(_code(c.get("code")) for c in codings if isinstance(c, dict) and c.get("code")),
        expression=tuple(mask(path) for path in paths[:5]),
        diagnostics=mask(text),
    )


def mask(text: str) -> str:
    """Free text with every word that could carry PHI replaced by ``…``, cut to ``MAX_TEXT``."""
    text = QUOTED.sub(MASK, text[:MAX_INPUT])
    masked = WORD.sub(lambda match: _word(match.group(), _starts_sentence(text, match.start())), text)
    masked = re.sub(rf"{MASK}(?:[\s,;:]*{MASK})+", MASK, masked)
    masked = " ".join(masked.split())
    return masked if len(masked) <= MAX_TEXT else masked[: MAX_TEXT - 1] + MASK


def _starts_sentence(text: str, position: int) -> bool:
    before = text[:position].rstrip()
    return not before or before[-1] in ".:;!?"


def _word(token: str, sentence_start: bool) -> str:
    """A word, a FHIR path (``Bundle.entry[2].resource``) or a code passes only if every part is
    known; a grammar word passes in lower case, or capitalised where a sentence starts, so that a
    surname that happens to be an English word (Read, Long) is still masked inside a sentence."""
    if ERROR_CODE.match(token) or EXCEPTION_TYPE.match(token) or token in ACRONYMS:
        return token
    segments = [INDEX.sub("", segment) for segment in token.split(".")]
    if all(_known(segment, sentence_start and index == 0) for index, segment in enumerate(segments)):
        return token
    return MASK


def _known(segment: str, sentence_start: bool) -> bool:
    if not segment or any(ch.isdigit() or ch in "[]" for ch in segment):
        return False
    lower = segment.lower()
    if segment in _fhir_elements() or lower in _fhir_type_names():
        return True
    return lower in GRAMMAR and (segment == lower or (sentence_start and segment == lower.capitalize()))


@cache
def _fhir_type_names() -> frozenset[str]:
    """FHIR R4 resource and data type names, lower-cased (the model modules are named after them)."""
    return frozenset(module.name for module in pkgutil.iter_modules(fhir_r4b.__path__))


@cache
def _fhir_elements() -> frozenset[str]:
    """Every element name of every R4 resource and data type: the schema's words, never data."""
    names: set[str] = set()
    for module_name in _fhir_type_names():
        if module_name.startswith("fhirtypes"):
            continue
        module = importlib.import_module(f"{fhir_r4b.__name__}.{module_name}")
        for model in vars(module).values():
            if isinstance(model, type) and issubclass(model, BaseModel):
                names.update((field.alias or name).lstrip("_") for name, field in model.model_fields.items())
    return frozenset(name for name in names if name)


def _closed(value: object, allowed: frozenset[str]) -> str:
    return value if isinstance(value, str) and value in allowed else MASK


def _code(value: object) -> str:
    return value if isinstance(value, str) and CODE_LIKE.match(value) else MASK


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []
