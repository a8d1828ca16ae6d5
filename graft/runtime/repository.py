"""The plan as a model repository: one model entry per fragment it serves, the same for the
HTTP and gRPC frontends.

An entry is named ``<model>.p<k>``: the server runs blocks ``[k, L)``. Its one input
``INPUT__0`` is FP32 of shape ``[-1, *activation entering k]``; its one output ``OUTPUT__0``
is FP32 ``[-1, *last block's output]``; version ``1``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import numpy as np

from graft.errors import GraftInputError
from graft.models.catalog import get_model, model_names
from graft.plan.plan import Plan
from graft.runtime.protocol import (
    InferRequest,
    ProtocolError,
    decode_request,
    encode_response,
)
from graft.workload.flows import Flow, Workload

INPUT_NAME = "INPUT__0"
OUTPUT_NAME = "OUTPUT__0"
VERSION = "1"
SERVER_NAME = "graft"
PLATFORM = "pytorch_libtorch"
#: Most samples one request may carry.
MAX_SAMPLES = 256

_NAME = re.compile(r"^(?P<model>[a-z0-9_]+)\.p(?P<p>\d+)$")


class NotFound(Exception):
    """A model entry or version this server does not have."""


def model_name(model: str, partition: int) -> str:
    return f"{model}.p{partition}"


def output_shape(model: str) -> tuple[int, ...]:
    return tuple(get_model(model).blocks[-1].out_shape)


def fragment(name: str, version: str | None,
             served: Callable[[], list[tuple[str, int]]]) -> tuple[str, int]:
    """(model, partition) of entry ``name``: any partition point of a known model is an
    entry (the plan in force may not route it yet: the engine refuses those requests, and
    re-planning sees them); ``NotFound`` for anything else, naming the entries ``served()``
    returns (asked only then: it is not work on every request)."""
    m = _NAME.match(name)
    key = (m["model"], int(m["p"])) if m else None
    if key is None or key[0] not in model_names() or not 0 <= key[1] < get_model(
            key[0]).num_blocks:
        raise NotFound(f"unknown model {name!r}: entries are <model>.p<k> for a partition "
                       f"point k of a known model; this server's plan serves "
                       f"{', '.join(model_name(*k) for k in served()) or 'none'}")
    if version not in (None, "", VERSION):
        raise NotFound(f"model {name!r} has only version {VERSION}, not {version!r}")
    return key


def metadata(model: str, partition: int) -> dict[str, Any]:
    return {
        "name": model_name(model, partition),
        "versions": [VERSION],
        "platform": PLATFORM,
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32",
                    "shape": [-1, *get_model(model).in_shape(partition)]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32",
                     "shape": [-1, *output_shape(model)]}],
    }


def config(model: str, partition: int) -> dict[str, Any]:
    return {
        "name": model_name(model, partition),
        "platform": PLATFORM,
        "max_batch_size": MAX_SAMPLES,
        "input": [{"name": INPUT_NAME, "data_type": "TYPE_FP32",
                   "dims": list(get_model(model).in_shape(partition))}],
        "output": [{"name": OUTPUT_NAME, "data_type": "TYPE_FP32",
                    "dims": list(output_shape(model))}],
    }


def workload_of(plan: Plan) -> Workload:
    """The flows a plan routes, each with its route's worst-case time as its budget: a plan
    names the flows it routes but not their budgets, so a plan served without its workload
    takes what it guarantees."""
    stages = plan.stage_by_id()
    flows = []
    for r in plan.routes:
        first = stages.get(r.stages[0]) if r.stages else None
        if first is None:
            raise GraftInputError(f"plan route of flow {r.flow!r} names no known stage")
        flows.append(Flow(r.flow, first.model, first.start, first.rate, r.latency_ms))
    return Workload(tuple(flows))


def check_input(inputs: dict[str, np.ndarray], model: str, partition: int) -> np.ndarray:
    """The request's one input, checked against the entry's activation shape."""
    name = model_name(model, partition)
    if set(inputs) != {INPUT_NAME}:
        raise ProtocolError(f"{name} takes one input, {INPUT_NAME}; got {sorted(inputs)}")
    x = inputs[INPUT_NAME]
    want = get_model(model).in_shape(partition)
    if x.dtype != np.float32:
        raise ProtocolError(f"{INPUT_NAME} must be FP32, got {x.dtype}")
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise ProtocolError(f"{INPUT_NAME} of {name} must have shape "
                            f"[n, {', '.join(map(str, want))}], got {list(x.shape)}")
    if not 1 <= x.shape[0] <= MAX_SAMPLES:
        raise ProtocolError(f"{INPUT_NAME} must hold 1 to {MAX_SAMPLES} samples, got "
                            f"{x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ProtocolError(f"{INPUT_NAME} holds NaN or infinite values")
    return x


def check_outputs(requested: list[str] | None) -> None:
    unknown = [n for n in requested or () if n != OUTPUT_NAME]
    if unknown:
        raise ProtocolError(f"unknown output {unknown[0]!r}: the output is {OUTPUT_NAME}")


def read_infer(body: bytes, header_length: str | int | None, model: str, partition: int
               ) -> tuple[InferRequest, np.ndarray, bool]:
    """An HTTP infer body for entry (model, partition): the decoded request, its checked
    input, and whether the client wants the output as binary data."""
    req = decode_request(body, header_length)
    x = check_input(req.inputs, model, partition)
    binary = req.binary_default
    if req.outputs is not None:
        check_outputs([n for n, _ in req.outputs])
        binary = any(b for _, b in req.outputs)
    return req, x, binary


def infer_response(model: str, partition: int, request_id: str | None, y: np.ndarray,
                   binary: bool) -> tuple[bytes, int | None]:
    """The HTTP infer response body carrying ``y``, and its JSON header's length when the
    output is binary (None: the body is all JSON)."""
    return encode_response(model_name(model, partition), VERSION, request_id,
                           [(OUTPUT_NAME, y, binary)])
