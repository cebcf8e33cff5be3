"""A KServe Open Inference Protocol (v2, REST) client: one inference call under one hard deadline.

``POST {url}/v2/models/{name}[/versions/{version}]/infer`` with one tensor of shape ``[1]`` per
input and a random request id: nothing in the body names the patient. The call runs in a worker
thread that the caller waits on for at most ``deadline_seconds``, so connecting, waiting and
reading together cannot hold a hook call past it, even when a server trickles its answer; a
worker left behind still has every socket wait bounded by the deadline.

Redirects are not followed (a redirected POST would carry the body to a host the card does not
name); any status but 200 is an HTTP error. The answer is parsed strictly: the output must be
there once, numeric, its shape must match its data and the score must be a finite number;
anything else is malformed, never a guessed score. A circuit breaker per endpoint stops calling
a server that keeps failing, so a dead model server costs a hook call nothing.
"""

from __future__ import annotations

import json
import math
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass

import requests
from pydantic import BaseModel, Field, StrictFloat, StrictInt, StrictStr

from app.engines.external.failure import ExternalModelFailed
from app.engines.external.spec import ExternalModel
from app.llm.breaker import CircuitBreaker
from app.observability.metrics import record_circuit_state

MAX_ANSWER_BYTES = 64 * 1024
CHUNK_BYTES = 8 * 1024
NUMERIC_OUTPUTS = frozenset(
    {"FP16", "FP32", "FP64", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"}
)


@dataclass(frozen=True)
class Tensor:
    """One input tensor of shape ``[1]``: a number computed inside Countersign."""

    name: str
    datatype: str
    value: bool | int | float

    def as_json(self) -> dict:
        return {"name": self.name, "shape": [1], "datatype": self.datatype, "data": [self.value]}


@dataclass(frozen=True)
class Inference:
    score: float
    request_id: str
    """The random id sent with the request: it ties our record to the model server's log."""


class _Output(BaseModel):
    name: StrictStr
    datatype: StrictStr
    shape: list[StrictInt]
    data: list[StrictInt | StrictFloat]


class _Answer(BaseModel):
    model_name: StrictStr | None = None
    id: StrictStr | None = None
    outputs: list[_Output] = Field(min_length=1)


class KServeClient:
    def __init__(self, spec: ExternalModel, session: requests.Session | None = None) -> None:
        self.spec = spec
        self.session = session or requests.Session()
        self.breaker = CircuitBreaker(spec.breaker.failures, spec.breaker.reset_seconds)
        self.breaker_name = f"kserve:{spec.model_name}"

    def infer(self, inputs: Sequence[Tensor]) -> Inference:
        """The score, or ``ExternalModelFailed`` within the deadline (at once when the breaker is open)."""
        if not self.breaker.allow():
            raise ExternalModelFailed("circuit open")
        try:
            inference = self._call(inputs)
        except Exception:
            self.breaker.record_failure()
            record_circuit_state(self.breaker_name, self.breaker.state)
            raise
        self.breaker.record_success()
        record_circuit_state(self.breaker_name, self.breaker.state)
        return inference

    def _call(self, inputs: Sequence[Tensor]) -> Inference:
        request_id = str(uuid.uuid4())
        body = {"id": request_id, "inputs": [tensor.as_json() for tensor in inputs]}
        raw = _within(self.spec.deadline_seconds, lambda: self._post(body))
        return Inference(_score(_answer(raw), self.spec, request_id), request_id)

    def _post(self, body: dict) -> bytes:
        seconds = self.spec.deadline_seconds
        try:
            with self.session.post(
                self.spec.infer_url,
                json=body,
                headers={"Accept": "application/json"},
                timeout=(seconds, seconds),
                stream=True,
                allow_redirects=False,
            ) as response:
                if response.status_code != 200:
                    raise ExternalModelFailed(f"http error {response.status_code}")
                return _read_capped(response)
        except requests.Timeout:
            raise ExternalModelFailed(f"timeout after {seconds} s") from None
        except requests.RequestException as error:
            raise ExternalModelFailed(f"unavailable ({type(error).__name__})") from None


def _within(seconds: float, call: Callable[[], bytes]) -> bytes:
    """The call's result, or a timeout once ``seconds`` have passed; the worker then finishes alone."""
    outcome: Future[bytes] = Future()

    def run() -> None:
        try:
            outcome.set_result(call())
        except BaseException as error:  # handed to the caller, who re-raises it
            outcome.set_exception(error)

    threading.Thread(target=run, name="kserve-infer", daemon=True).start()
    if not wait([outcome], timeout=seconds).done:
        raise ExternalModelFailed(f"timeout after {seconds} s")
    return outcome.result()


def _read_capped(response: requests.Response) -> bytes:
    body = bytearray()
    for chunk in response.iter_content(CHUNK_BYTES):
        body += chunk
        if len(body) > MAX_ANSWER_BYTES:
            raise ExternalModelFailed("malformed answer: too large")
    return bytes(body)


def _answer(raw: bytes) -> _Answer:
    try:
        return _Answer.model_validate(json.loads(raw))
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, pydantic's ValidationError; deep nesting
        raise ExternalModelFailed("malformed answer: not a v2 inference response") from None


def _score(answer: _Answer, spec: ExternalModel, request_id: str) -> float:
    name, index = spec.output.name, spec.output.index
    if answer.id is not None and answer.id != request_id:
        raise ExternalModelFailed("malformed answer: the id of another request")
    if answer.model_name is not None and answer.model_name != spec.model_name:
        raise ExternalModelFailed("malformed answer: from another model")
    found = [output for output in answer.outputs if output.name == name]
    if len(found) != 1:
        raise ExternalModelFailed(
            f"malformed answer: output '{name}' {'missing' if not found else 'repeated'}"
        )
    output = found[0]
    if output.datatype not in NUMERIC_OUTPUTS:
        raise ExternalModelFailed(f"malformed answer: output '{name}' is not numeric")
    if any(size < 0 for size in output.shape) or math.prod(output.shape) != len(output.data):
        raise ExternalModelFailed(f"malformed answer: output '{name}' does not match its shape")
    if index >= len(output.data):
        raise ExternalModelFailed(f"malformed answer: output '{name}' has no element {index}")
    return _checked(output.data[index], spec)


def _checked(value: int | float, spec: ExternalModel) -> float:
    try:
        score = float(value)
    except OverflowError:  # an integer beyond any float
        score = math.inf
    if not math.isfinite(score):
        raise ExternalModelFailed("malformed answer: the score is not a finite number")
    if spec.card.confidence == "score" and not 0 <= score <= 1:
        raise ExternalModelFailed("malformed answer: the score is not a probability")
    return score
