"""FHIRPath for tensor inputs: checked strictly when the card loads, kept from turning text into numbers.

fhirpathpy recovers from syntax errors on its own, so a typo would silently read nothing: the
expression is parsed with an error listener that raises, then tried on an empty resource, which
catches unknown functions and wrong arity too (the approach of the intended-use rules, which an
engine may not import from governance).

A tensor carries numbers only, but FHIRPath can make a number out of text (``id.toInteger()``,
``name.given.length()``). Those functions are refused, so an identifier, a name or free text can
never reach the model server encoded as a number; dates become numbers only through the engine's
own transforms (ages capped at 90, durations in days).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import lru_cache

from antlr4 import CommonTokenStream, InputStream, ParserRuleContext
from antlr4.error.ErrorListener import ErrorListener
from fhirpathpy import compile as compile_fhirpath
from fhirpathpy.parser.generated.FHIRPathLexer import FHIRPathLexer
from fhirpathpy.parser.generated.FHIRPathParser import FHIRPathParser

TEXT_TO_NUMBER = frozenset({"toInteger", "toDecimal", "toQuantity", "length", "indexOf", "toChars", "split"})
EMPTY_RESOURCES = {
    "Patient": {"resourceType": "Patient"},
    "Encounter": {"resourceType": "Encounter"},
    "Bundle": {"resourceType": "Bundle", "type": "collection", "entry": []},
}


def check_expression(expression: str, about: str) -> None:
    """Raises ``ValueError`` saying what is wrong: syntax, a refused function, or evaluation."""
    tree = _parse(expression)
    refused = sorted(set(_functions(tree)) & TEXT_TO_NUMBER)
    if refused:
        raise ValueError(f"{', '.join(refused)}() may not be used: no text may become a number")
    try:
        compiled(expression)(EMPTY_RESOURCES[about])
    except Exception as error:  # fhirpathpy raises plain Exception for evaluation errors
        raise ValueError(f"not a valid FHIRPath expression ({error})") from None


@lru_cache(maxsize=256)
def compiled(expression: str) -> Callable[[dict], list]:
    return compile_fhirpath(expression)


class _RaiseOnSyntaxError(ErrorListener):
    def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e) -> None:
        raise ValueError(f"not a valid FHIRPath expression (column {column}: {msg})")


def _parse(expression: str) -> ParserRuleContext:
    """The whole text must be one expression: trailing tokens are a syntax error too."""
    lexer = FHIRPathLexer(InputStream(expression))
    parser = FHIRPathParser(CommonTokenStream(lexer))
    for recognizer in (lexer, parser):
        recognizer.removeErrorListeners()
        recognizer.addErrorListener(_RaiseOnSyntaxError())
    return parser.entireExpression()


def _functions(node: object) -> Iterator[str]:
    """Names of every function the expression calls, backtick-delimited names included."""
    if isinstance(node, FHIRPathParser.FunctnContext):
        yield node.identifier().getText().strip("`")
    for child in getattr(node, "children", None) or ():
        yield from _functions(child)
