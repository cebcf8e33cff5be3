"""A client for private OpenAI-compatible chat-completions endpoints (vLLM, Ollama, Azure, gateways).

One call has one deadline covering connect, wait and body; the answer must be JSON that
validates against the caller's pydantic schema (requested as ``response_format`` json_schema).
Anything else (timeout, HTTP error, malformed body, schema violation, refusal) is an
``LlmFailure`` naming its kind, never the content: errors and logs carry no patient data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, TypeVar

import requests
from pydantic import BaseModel, Field, ValidationError

FailureKind = Literal[
    "timeout", "unavailable", "http-error", "malformed", "schema", "refusal", "ungrounded", "circuit-open"
]
Schema = TypeVar("Schema", bound=BaseModel)
MAX_RESPONSE_BYTES = 2 * 1024 * 1024
CHUNK_BYTES = 16 * 1024


class LlmFailure(Exception):
    """Why the model produced nothing usable; ``kind`` is safe to log and show."""

    def __init__(self, kind: FailureKind, detail: str = "") -> None:
        super().__init__(f"{kind}{': ' + detail if detail else ''}")
        self.kind = kind


@dataclass(frozen=True)
class Endpoint:
    """Where the model lives: ``url`` is the API base, e.g. ``http://gpu-host:8000/v1``."""

    url: str
    model: str
    api_key: str = ""
    deadline_seconds: float = 6.0

    @property
    def completions_url(self) -> str:
        return self.url.rstrip("/") + "/chat/completions"


class _Message(BaseModel):
    content: str | None = None
    refusal: str | None = None


class _Choice(BaseModel):
    message: _Message
    finish_reason: str | None = None


class _Completion(BaseModel):
    choices: list[_Choice] = Field(min_length=1)


class ChatClient:
    def __init__(self, endpoint: Endpoint, session: requests.Session | None = None) -> None:
        self.endpoint = endpoint
        self.session = session or requests.Session()

    def complete(self, messages: list[dict], schema: type[Schema], schema_name: str) -> Schema:
        """The model's structured answer, or ``LlmFailure`` within the endpoint's deadline."""
        deadline = time.monotonic() + self.endpoint.deadline_seconds
        raw = self._post(self._body(messages, schema, schema_name), deadline)
        return _parse(raw, schema)

    def _body(self, messages: list[dict], schema: type[BaseModel], schema_name: str) -> dict:
        return {
            "model": self.endpoint.model,
            "messages": messages,
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": schema_name, "schema": schema.model_json_schema(), "strict": True},
            },
        }

    def _post(self, body: dict, deadline: float) -> bytes:
        headers = {"Accept": "application/json"}
        if self.endpoint.api_key:
            headers["Authorization"] = f"Bearer {self.endpoint.api_key}"
        seconds = self.endpoint.deadline_seconds
        try:
            with self.session.post(
                self.endpoint.completions_url,
                json=body,
                headers=headers,
                timeout=(seconds, seconds),
                stream=True,
            ) as response:
                if response.status_code != 200:
                    raise LlmFailure("http-error", f"status {response.status_code}")
                return _read_within(response, deadline)
        except requests.Timeout:
            raise LlmFailure("timeout") from None
        except requests.RequestException as error:
            raise LlmFailure("unavailable", type(error).__name__) from None


def _read_within(response: requests.Response, deadline: float) -> bytes:
    """The body, unless it takes past the deadline (a slow trickle too) or grows past the cap."""
    body = bytearray()
    for chunk in response.iter_content(CHUNK_BYTES):
        if time.monotonic() > deadline:
            raise LlmFailure("timeout")
        body += chunk
        if len(body) > MAX_RESPONSE_BYTES:
            raise LlmFailure("malformed", "response too large")
    if time.monotonic() > deadline:
        raise LlmFailure("timeout")
    return bytes(body)


def _parse(raw: bytes, schema: type[Schema]) -> Schema:
    try:
        completion = _Completion.model_validate_json(raw)
    except ValidationError:
        raise LlmFailure("malformed", "not a chat completion") from None
    choice = completion.choices[0]
    if choice.message.refusal or choice.finish_reason == "content_filter":
        raise LlmFailure("refusal")
    if not choice.message.content:
        raise LlmFailure("malformed", "no content")
    try:
        return schema.model_validate_json(choice.message.content)
    except ValidationError as error:
        raise LlmFailure("schema", f"{error.error_count()} violations") from None
