"""A real local HTTP server speaking the OpenAI chat-completions API, with the ways endpoints fail.

It answers ``POST /v1/chat/completions`` in one of several modes and records every request
body it received, so tests can inspect exactly what left Countersign.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Literal

from tests.recording_server import RecordingServer

Mode = Literal["normal", "slow", "hanging", "malformed", "schema-violation", "refusal", "error-500"]
SLOW_SECONDS = 3.0


class FakeLlmServer(RecordingServer):
    """``answer`` builds the assistant's JSON content from the request body (mode ``normal``)."""

    def __init__(self, answer: Callable[[dict], dict]) -> None:
        self.answer = answer
        self.mode: Mode = "normal"
        super().__init__()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                """Quiet: the test output is not the place for request lines."""

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                fake.raw_requests.append(raw)
                fake.headers.append(dict(self.headers))
                if self.path != "/v1/chat/completions":
                    self._send(404, b'{"error": "not found"}')
                    return
                body = json.loads(raw)
                fake.requests.append(body)
                fake._respond(self, body)

            def _send(self, status: int, payload: bytes) -> None:
                """A client that gave up (deadline passed) has closed the socket: that is expected."""
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    return

        return Handler

    def _respond(self, handler: BaseHTTPRequestHandler, body: dict) -> None:
        mode = self.mode
        if mode == "hanging":
            self._release.wait(60)
            return
        if mode == "slow":
            time.sleep(SLOW_SECONDS)
        if mode == "error-500":
            handler._send(500, b'{"error": {"message": "internal error"}}')
        elif mode == "malformed":
            handler._send(200, b'{"choices": [{"message": {"content": "{\\"sections\\": [')
        elif mode == "schema-violation":
            handler._send(200, _completion(json.dumps({"summary": "free text, no sections"})))
        elif mode == "refusal":
            handler._send(200, _completion(None, refusal="I can't help with that request."))
        else:
            handler._send(200, _completion(json.dumps(self.answer(body))))


def _completion(content: str | None, refusal: str | None = None) -> bytes:
    message: dict = {"role": "assistant", "content": content}
    if refusal is not None:
        message["refusal"] = refusal
    return json.dumps(
        {
            "id": "chatcmpl-test",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "test-model",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }
    ).encode()
