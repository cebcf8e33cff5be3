"""A real local HTTP model server speaking the KServe Open Inference Protocol v2 (REST).

It serves one model, ``readmission-30d`` version ``3`` (the example of docs/EXTERNAL_MODELS.md),
whose score is a known formula of its four inputs, so tests can assert exact values::

    z    = -6.0 + 0.04 * age + 0.15 * stay_days + 0.5 * ed_visits + 0.3 * conditions
    risk = 1 / (1 + exp(-z))

``GET /v2/health/ready``, ``GET /v2/models/{name}[/versions/{version}]`` (metadata) and
``POST /v2/models/{name}[/versions/{version}]/infer``. Like a real server it answers 400 to a
request that does not match the model's inputs (names, datatypes, shape ``[1]``). Modes switch
at runtime: ``normal``, ``slow`` (answers after SLOW_SECONDS, past any test deadline),
``trickle`` (a byte of the answer every TRICKLE_SECONDS, so no single socket wait times out),
``redirect`` (a 307 to another path, which a client must not follow with the body), the
malformed answers ``not-json``, ``wrong-shape``, ``missing-output``, ``nan``, ``wrong-id`` and
``not-a-probability`` (a score of 1.7), and ``error-500``. It counts inference requests and keeps
every body, so tests can see exactly what left Countersign.
"""

from __future__ import annotations

import json
import math
import re
from http.server import BaseHTTPRequestHandler
from typing import Literal

from tests.recording_server import RecordingServer

Mode = Literal[
    "normal",
    "slow",
    "trickle",
    "redirect",
    "not-json",
    "wrong-shape",
    "missing-output",
    "nan",
    "not-a-probability",
    "wrong-id",
    "error-500",
]
MODEL_NAME = "readmission-30d"
MODEL_VERSION = "3"
OUTPUT = "risk"
INPUTS = {"age": "FP32", "stay_days": "FP32", "ed_visits": "INT32", "conditions": "INT32"}
INTERCEPT = -6.0
WEIGHTS = {"age": 0.04, "stay_days": 0.15, "ed_visits": 0.5, "conditions": 0.3}
SLOW_SECONDS = 3.0
TRICKLE_SECONDS = 0.2
MODEL_PATH = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?P<infer>/infer)?$")


def readmission_risk(age: float, stay_days: float, ed_visits: int, conditions: int) -> float:
    """The served model's score, for tests to compute what they expect."""
    values = {"age": age, "stay_days": stay_days, "ed_visits": ed_visits, "conditions": conditions}
    z = INTERCEPT + sum(weight * values[name] for name, weight in WEIGHTS.items())
    return 1 / (1 + math.exp(-z))


class InvalidRequest(Exception):
    """What a real server would answer 400 to."""


class KServeModelServer(RecordingServer):
    def __init__(self) -> None:
        self.mode: Mode = "normal"
        super().__init__()

    @property
    def request_count(self) -> int:
        """Inference requests received, valid or not."""
        return len(self.raw_requests)

    @property
    def last_request(self) -> dict:
        return self.requests[-1]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_: object) -> None:
                """Quiet: the test output is not the place for request lines."""

            def do_GET(self) -> None:
                match = MODEL_PATH.match(self.path)
                if self.path == "/v2/health/ready":
                    self.send_json(200, {"ready": True})
                elif match and not match["infer"] and _served(match):
                    self.send_json(200, _metadata())
                else:
                    self.send_json(404, {"error": f"no such path {self.path}"})

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                match = MODEL_PATH.match(self.path)
                if not (match and match["infer"] and _served(match)):
                    self.send_json(404, {"error": f"no such model at {self.path}"})
                    return
                server.raw_requests.append(raw)
                server.headers.append(dict(self.headers))
                server._infer(self, raw)

            def send_json(self, status: int, payload: object) -> None:
                self.send_bytes(status, json.dumps(payload).encode())

            def send_bytes(self, status: int, body: bytes) -> None:
                """A client that gave up (deadline passed) has closed the socket: that is expected."""
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    return

        return Handler

    def _infer(self, handler: BaseHTTPRequestHandler, raw: bytes) -> None:
        try:
            body = json.loads(raw)
            self.requests.append(body)
            values = _inputs(body)
        except (ValueError, InvalidRequest) as error:
            handler.send_json(400, {"error": str(error)})
            return
        if self.mode == "slow":
            self._release.wait(SLOW_SECONDS)
        if self.mode == "trickle":
            self._trickle(
                handler, json.dumps(self._answer(body.get("id"), readmission_risk(**values))).encode()
            )
        elif self.mode == "redirect":
            handler.send_response(307)
            handler.send_header("Location", "/elsewhere")
            handler.send_header("Content-Length", "0")
            handler.end_headers()
        elif self.mode == "error-500":
            handler.send_json(500, {"error": "model crashed"})
        elif self.mode == "not-json":
            handler.send_bytes(200, b'{"outputs": [{"name": "risk", ')
        else:
            handler.send_json(200, self._answer(body.get("id"), readmission_risk(**values)))

    def _trickle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            for byte in body:
                if self._release.wait(TRICKLE_SECONDS):
                    return
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            return

    def _answer(self, request_id: str | None, risk: float) -> dict:
        output = {"name": OUTPUT, "datatype": "FP32", "shape": [1], "data": [risk]}
        if self.mode == "wrong-shape":
            output["shape"] = [2]
        elif self.mode == "missing-output":
            output["name"] = "probability"
        elif self.mode == "nan":
            output["data"] = [math.nan]
        elif self.mode == "not-a-probability":
            output["data"] = [1.7]
        answer = {"model_name": MODEL_NAME, "model_version": MODEL_VERSION, "outputs": [output]}
        if request_id is not None:
            answer["id"] = "another-request" if self.mode == "wrong-id" else request_id
        return answer


def _served(match: re.Match) -> bool:
    return match["name"] == MODEL_NAME and match["version"] in (None, MODEL_VERSION)


def _metadata() -> dict:
    return {
        "name": MODEL_NAME,
        "versions": [MODEL_VERSION],
        "platform": "countersign-test",
        "inputs": [{"name": name, "datatype": datatype, "shape": [1]} for name, datatype in INPUTS.items()],
        "outputs": [{"name": OUTPUT, "datatype": "FP32", "shape": [1]}],
    }


def _inputs(body: object) -> dict[str, float]:
    """The request's values by input name, checked as a v2 server checks them."""
    tensors = body.get("inputs") if isinstance(body, dict) else None
    if not isinstance(tensors, list):
        raise InvalidRequest("inputs: expected a list of tensors")
    values: dict[str, float] = {}
    for tensor in tensors:
        name = tensor.get("name") if isinstance(tensor, dict) else None
        if name not in INPUTS or name in values:
            raise InvalidRequest(f"unexpected or repeated input {name!r}")
        data = tensor.get("data")
        if tensor.get("datatype") != INPUTS[name] or tensor.get("shape") != [1]:
            raise InvalidRequest(f"input {name}: expected {INPUTS[name]} of shape [1]")
        if not (isinstance(data, list) and len(data) == 1 and _number(data[0], INPUTS[name])):
            raise InvalidRequest(f"input {name}: expected one {INPUTS[name]} value")
        values[name] = data[0]
    if values.keys() != INPUTS.keys():
        raise InvalidRequest(f"missing inputs {sorted(INPUTS.keys() - values.keys())}")
    return values


def _number(value: object, datatype: str) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if datatype.startswith("INT") else isinstance(value, int | float)
