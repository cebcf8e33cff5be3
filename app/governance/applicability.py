"""Intended use as data: FHIRPath conditions from the model card, checked before a model runs.

A card states where its model applies (hooks, age, care setting, required inputs) as FHIRPath
expressions on the patient or the hook's encounter, so a CMIO reads and changes them in the
card, not in code. Expressions are compiled when the card loads: a typo stops the service at
start instead of silently letting every patient through.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from typing import TYPE_CHECKING, Literal

import orjson
from antlr4 import CommonTokenStream, InputStream
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser
from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:
    from collections.abc import Callable


class ApplicabilityRule(BaseModel):
    """One condition of the intended use; ``outside`` is what the record says when it fails."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    about: Literal["Patient", "Encounter"]
    fhirpath: str = Field(min_length=1)
    outside: str = Field(min_length=1)

    @model_validator(mode="after")
    def _compiles(self) -> ApplicabilityRule:
        """Parse strictly (fhirpathpy itself recovers from syntax errors) and try it on an empty
        resource, which catches unknown functions and wrong arity too."""
        try:
            _check_syntax(self.fhirpath)
            _compiled(self.fhirpath)({"resourceType": self.about})
        except Exception as error:  # fhirpathpy raises plain Exception for evaluation errors
            raise ValueError(f"fhirpath: not a valid FHIRPath expression ({error})") from None
        return self

    def holds_for(self, resource: dict | None) -> bool:
        """True only when the expression evaluates to exactly ``true``; missing data fails closed."""
        if resource is None:
            return False
        return _holds(self.fhirpath, orjson.dumps(resource, option=orjson.OPT_SORT_KEYS), date.today())


class _RaiseOnSyntaxError(ErrorListener):
    def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e) -> None:
        raise ValueError(f"column {column}: {msg}")


def _check_syntax(expression: str) -> None:
    lexer = FHIRPathLexer(InputStream(expression))
    parser = FHIRPathParser(CommonTokenStream(lexer))
    for recognizer in (lexer, parser):
        recognizer.removeErrorListeners()
        recognizer.addErrorListener(_RaiseOnSyntaxError())
    parser.expression()


@lru_cache(maxsize=4096)
def _holds(expression: str, resource_json: bytes, today: date) -> bool:
    """Memoised per resource content and day (``today()`` may appear in the expression): fhirpathpy
    costs about half a millisecond per evaluation, and the same chart is opened again and again."""
    return _compiled(expression)(orjson.loads(resource_json)) == [True]


@lru_cache(maxsize=256)
def _compiled(expression: str) -> Callable[[dict], list]:
    return compile_fhirpath(expression)
