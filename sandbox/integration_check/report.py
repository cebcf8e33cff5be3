"""The check's result: one row per step and check, printed as a table or as JSON.

A row passes, fails (with a short fix hint) or is skipped (the server does not offer what the
check would use, e.g. ``$validate``); the command exits 0 only when no row fails.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Literal

Result = Literal["pass", "fail", "skipped"]
COLUMNS = ("step", "check", "expected", "found", "result")


@dataclass(frozen=True)
class Row:
    step: str
    check: str
    expected: int
    found: int
    result: Result
    hint: str = ""
    #: ``expected`` is a minimum (cards: the model may find more than one thing).
    at_least: bool = False

    @classmethod
    def judge(
        cls,
        step: str,
        check: str,
        expected: int,
        found: int,
        hint: str,
        *,
        broken: bool = False,
        at_least: bool = False,
    ) -> Row:
        """Pass when ``found`` meets ``expected`` and nothing else went wrong (``broken``: a search
        the server refused, say); ``hint`` is kept only on a failure."""
        enough = found >= expected if at_least else found == expected
        result: Result = "pass" if enough and not broken else "fail"
        return cls(step, check, expected, found, result, "" if result == "pass" else hint, at_least)

    @classmethod
    def failed(cls, step: str, check: str, hint: str, expected: int = 1) -> Row:
        return cls(step, check, expected, 0, "fail", hint)

    def cells(self) -> tuple[str, ...]:
        expected = f"≥{self.expected}" if self.at_least else str(self.expected)
        found = "-" if self.result == "skipped" else str(self.found)
        return (self.step, self.check, expected, found, self.result)


@dataclass
class Report:
    fhir_url: str
    run: str
    rows: list[Row] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(row.result != "fail" for row in self.rows)

    def as_json(self) -> dict:
        return {
            "fhir_url": self.fhir_url,
            "run": self.run,
            "passed": self.passed,
            "rows": [asdict(row) for row in self.rows],
        }

    def table(self) -> str:
        """Aligned columns; a failed row is followed by its fix hint, indented."""
        cells = [COLUMNS, *(row.cells() for row in self.rows)]
        widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
        numeric = {2, 3}
        lines: list[str] = []
        noted: set[str] = set()
        for line, row in zip(cells, [None, *self.rows], strict=True):
            text = "  ".join(
                cell.rjust(width) if i in numeric else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(line, widths, strict=True))
            )
            lines.append(text.rstrip())
            if row is None or not row.hint or row.hint in noted:
                continue
            lines.append(f"    {'fix' if row.result == 'fail' else 'note'}: {row.hint}")
            if row.result != "fail":
                noted.add(row.hint)  # a note (why a check was skipped) is said once
        failed = sum(row.result == "fail" for row in self.rows)
        verdict = "all checks passed" if self.passed else f"{failed} of {len(self.rows)} checks failed"
        lines.append(f"\n{verdict} (run {self.run} against {self.fhir_url})")
        return "\n".join(lines)
