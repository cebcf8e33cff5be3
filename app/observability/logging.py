"""Structured logs: one JSON object per line, correlated by request id and hookInstance, PHI-free.

PHI is kept out centrally, by ``PhiFilter`` on the one handler every record reaches, not by each
call site remembering. A record may keep only its constant message template, numbers, booleans,
and the values of a short list of fields known to carry no patient data (codes, route templates,
UUIDs) when they look like codes. Every other string, every object, and every exception message
is replaced by a keyed hash: it still correlates across lines, but names, identifiers, birth
dates, addresses, free text and resource bodies never reach the log. Exceptions keep their type
and stack frames, never their message (a validation error quotes the input).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import sys
import traceback
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from flask import g, has_request_context

#: Fields whose values are codes, templates or identifiers Countersign generated: never PHI.
SAFE_FIELDS = frozenset(
    {
        "request_id",
        "hook_instance",
        "service",
        "hook",
        "route",
        "method",
        "status",
        "duration_ms",
        "cause",
        "iss",
        "jti",
        "jwks_url",
        "message_id",
        "kind",
        "disposition",
        "client",
    }
)
CONTEXT_FIELDS = ("request_id", "hook_instance")
CODE_LIKE = re.compile(r"^[A-Za-z0-9_.:/@|+=#<>-]{0,200}$")
_RECORD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
_PROCESS_KEY = secrets.token_bytes(32)


class PhiFilter(logging.Filter):
    """Rewrites each record in place so that it can no longer carry PHI (see the module docstring)."""

    def __init__(self, hash_key: bytes) -> None:
        super().__init__()
        self.hash_key = hash_key

    def filter(self, record: logging.LogRecord) -> bool:
        if not isinstance(record.msg, str):
            record.msg, record.args = self.digest(record.msg), ()
        elif record.args:
            record.args = tuple(self.scrub(None, value) for value in _positional(record.args))
        for name in _extra_names(record):
            setattr(record, name, self.scrub(name, getattr(record, name)))
        if record.exc_info and record.exc_info[1] is not None:
            record.exception = _exception_summary(record.exc_info[1])
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        for name in CONTEXT_FIELDS:
            value = g.get(name) if has_request_context() else None
            if value is not None:
                setattr(record, name, self.scrub(name, value))
        return True

    def scrub(self, name: str | None, value: Any) -> Any:
        """Numbers and booleans pass; a code-like string passes only in a safe field; else a hash."""
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str) and name in SAFE_FIELDS and CODE_LIKE.match(value):
            return value
        return self.digest(value)

    def digest(self, value: Any) -> str:
        text = value if isinstance(value, str) else repr(value)
        return "h:" + hmac.new(self.hash_key, text.encode(), hashlib.sha256).hexdigest()[:16]


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, correlation and extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
        }
        for name in _extra_names(record):
            event[name] = getattr(record, name)
        if hasattr(record, "exception"):
            event["exception"] = record.exception
        return orjson.dumps(event, default=str).decode()


class JsonLogHandler(logging.StreamHandler):
    """The service's log output; ``configure`` installs exactly one on the root logger."""


def configure(level: str, hash_key: str | None = None, stream: TextIO | None = None) -> JsonLogHandler:
    """Route every logger through one PHI-filtered JSON handler (idempotent across app instances).

    Without ``hash_key`` a random key is drawn per process: hashes then correlate within a
    process only. Set ``COUNTERSIGN_LOG_HASH_KEY`` to correlate across workers and hosts.
    """
    root = logging.getLogger()
    handler = next((h for h in root.handlers if isinstance(h, JsonLogHandler)), None)
    if handler is None:
        handler = JsonLogHandler(stream or sys.stderr)
        root.addHandler(handler)
    elif stream is not None:
        handler.setStream(stream)
    key = hash_key.encode() if hash_key else _PROCESS_KEY
    handler.setFormatter(JsonFormatter())
    handler.filters = [PhiFilter(key)]
    root.setLevel(level.upper())
    logging.getLogger("alembic.runtime.migration").setLevel(logging.WARNING)  # each /readyz opens one
    return handler


def _positional(args: Any) -> tuple:
    return args if isinstance(args, tuple) else (args,)


def _extra_names(record: logging.LogRecord) -> list[str]:
    """Fields a call site passed in ``extra`` (and the ones this module adds)."""
    return [name for name in vars(record) if name not in _RECORD_ATTRIBUTES and name != "exception"]


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError):
        return str(record.msg)


def _exception_summary(error: BaseException) -> dict:
    frames = traceback.extract_tb(error.__traceback__)
    return {
        "type": type(error).__name__,
        "frames": [f"{frame.filename}:{frame.lineno} in {frame.name}" for frame in frames],
    }
