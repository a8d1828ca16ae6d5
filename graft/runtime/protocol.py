"""The Open Inference Protocol (KServe v2) as Triton speaks it over HTTP: tensors in and out.

An infer request is a JSON object, optionally followed by binary tensor data (Triton's
binary tensor data extension): the header ``Inference-Header-Content-Length`` gives the
JSON's length, and every input whose ``parameters.binary_data_size`` is set takes that many
bytes of the rest of the body, in input order. Outputs go back as JSON ``data`` or, when
the request asks (``outputs[i].parameters.binary_data``, or ``parameters.binary_data_output``
for all, which is what ``tritonclient`` sends when it names no output), as binary data
after the JSON, with the same header on the response.

Everything here is pure: bytes in, numpy arrays out (and back), with ``ProtocolError`` (an
HTTP status and a message naming the field) for anything malformed. The request's
server-side budget is ``parameters.timeout`` in microseconds, what ``tritonclient``'s
``timeout=`` sends.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

HEADER_LENGTH = "Inference-Header-Content-Length"

#: v2 datatypes and their numpy dtypes (little-endian, as Triton sends them).
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"), "UINT16": np.dtype("<u2"), "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"), "INT16": np.dtype("<i2"), "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"), "FP32": np.dtype("<f4"), "FP64": np.dtype("<f8"),
}
#: The largest number of elements one tensor may declare (a 2 GiB fp32 tensor).
MAX_ELEMENTS = 1 << 29
#: The longest timeout a request may ask for, microseconds (an hour).
MAX_TIMEOUT_US = 3_600_000_000
#: Largest request (HTTP body or gRPC message) the frontends accept: 64 MiB, about a hundred
#: 224x224 fp32 images (aiohttp's default is 1 MiB).
MAX_REQUEST_BYTES = 64 * 2**20


class ProtocolError(Exception):
    """A malformed request: ``status`` is the HTTP status to answer with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def datatype_of(dtype: np.dtype) -> str:
    for name, dt in DATATYPES.items():
        if dt == dtype.newbyteorder("<") or dt == dtype:
            return name
    raise ProtocolError(f"no v2 datatype for numpy {dtype}", status=500)


@dataclass
class InferRequest:
    """A decoded infer request: its inputs, which outputs it wants and how, its timeout."""

    id: str | None
    inputs: dict[str, np.ndarray]
    #: (output name, as binary) for each output named; None: every output
    outputs: list[tuple[str, bool]] | None = None
    #: how unnamed outputs are sent (``parameters.binary_data_output``)
    binary_default: bool = False
    #: server-side budget, microseconds (``parameters.timeout``)
    timeout_us: int | None = None
    parameters: dict[str, Any] = field(default_factory=dict)


def json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as e:  # not UTF-8, not JSON, a 5000-digit integer
        raise ProtocolError(f"{what} is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise ProtocolError(f"{what} must be a JSON object")
    return obj


def _shape(raw: Any, name: str) -> tuple[int, ...]:
    if not isinstance(raw, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in raw):
        raise ProtocolError(f"input {name!r}: shape must be a list of non-negative integers")
    if math.prod(raw) > MAX_ELEMENTS:
        raise ProtocolError(f"input {name!r}: shape {raw} has more than {MAX_ELEMENTS} "
                            "elements", status=413)
    return tuple(raw)


def _timeout(params: dict[str, Any]) -> int | None:
    value = params.get("timeout")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_TIMEOUT_US:
        raise ProtocolError(f"parameters.timeout must be an integer number of microseconds in "
                            f"(0, {MAX_TIMEOUT_US}], got {value!r}")
    return value


def decode_request(body: bytes, header_length: str | int | None = None) -> InferRequest:
    """An infer request from its HTTP body (and ``Inference-Header-Content-Length``)."""
    if header_length is None:
        head, rest = body, b""
    else:
        try:
            n = int(header_length)
        except (TypeError, ValueError):
            raise ProtocolError(f"{HEADER_LENGTH} must be an integer, got "
                                f"{header_length!r}") from None
        if not 0 < n <= len(body):
            raise ProtocolError(f"{HEADER_LENGTH} {n} is outside the body's {len(body)} bytes")
        head, rest = body[:n], memoryview(body)[n:]
    req = json_object(head, "the request header")
    params = req.get("parameters", {})
    if not isinstance(params, dict):
        raise ProtocolError("parameters must be a JSON object")
    raw_inputs = req.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise ProtocolError("inputs must be a non-empty list")
    inputs: dict[str, np.ndarray] = {}
    offset = 0
    for raw in raw_inputs:
        name, array, used = _decode_tensor(raw, rest, offset)
        if name in inputs:
            raise ProtocolError(f"input {name!r} is given twice")
        inputs[name] = array
        offset += used
    if offset != len(rest):
        raise ProtocolError(f"the body holds {len(rest)} bytes of binary data, the inputs "
                            f"declare {offset}")
    rid = req.get("id")
    return InferRequest(
        id=None if rid is None else str(rid),
        inputs=inputs,
        outputs=_requested_outputs(req.get("outputs")),
        binary_default=bool(params.get("binary_data_output", False)),
        timeout_us=_timeout(params),
        parameters=params,
    )


def _decode_tensor(raw: Any, rest: memoryview | bytes, offset: int, kind: str = "input"
                   ) -> tuple[str, np.ndarray, int]:
    """One tensor of a request's ``inputs`` (or a response's ``outputs``: ``kind``), its
    data from JSON or from ``rest`` at ``offset``, and how many bytes of ``rest`` it took."""
    if not isinstance(raw, dict) or not isinstance(raw.get("name"), str):
        raise ProtocolError(f"every {kind} needs a name")
    name = raw["name"]
    dtype = DATATYPES.get(raw.get("datatype"))
    if dtype is None:
        raise ProtocolError(f"{kind} {name!r}: datatype must be one of {sorted(DATATYPES)}, "
                            f"got {raw.get('datatype')!r}")
    shape = _shape(raw.get("shape"), name)
    count = math.prod(shape)
    params = raw.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ProtocolError(f"{kind} {name!r}: binary_data_size must be a non-negative "
                                "integer")
        if size != count * dtype.itemsize:
            raise ProtocolError(f"{kind} {name!r}: binary_data_size {size} is not shape "
                                f"{list(shape)} of {raw['datatype']} ({count * dtype.itemsize} "
                                "bytes)")
        if offset + size > len(rest):
            raise ProtocolError(f"{kind} {name!r}: binary_data_size {size} runs past the end "
                                "of the body")
        array = np.frombuffer(rest, dtype=dtype, count=count, offset=offset).reshape(shape)
        return name, array, size
    data = raw.get("data")
    if data is None:
        raise ProtocolError(f"{kind} {name!r} has neither data nor binary_data_size")
    try:
        array = np.asarray(data, dtype=dtype)
    except (TypeError, ValueError, OverflowError):
        raise ProtocolError(f"{kind} {name!r}: data is not {raw['datatype']} numbers") from None
    if array.size != count:
        raise ProtocolError(f"{kind} {name!r}: {array.size} values for shape {list(shape)}")
    return name, array.reshape(shape), 0


def _requested_outputs(raw: Any) -> list[tuple[str, bool]] | None:
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise ProtocolError("outputs must be a list")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ProtocolError("every requested output needs a name")
        params = item.get("parameters") or {}
        out.append((item["name"], bool(params.get("binary_data", False))
                    if isinstance(params, dict) else False))
    return out


def encode_response(model: str, version: str, request_id: str | None,
                    outputs: list[tuple[str, np.ndarray, bool]]) -> tuple[bytes, int | None]:
    """The response body for ``outputs`` ((name, array, as binary)), and the JSON length to
    send as ``Inference-Header-Content-Length`` when binary data follows (else None)."""
    tensors = []
    blobs = []
    for name, array, binary in outputs:
        array = np.ascontiguousarray(array)
        t: dict[str, Any] = {"name": name, "datatype": datatype_of(array.dtype),
                             "shape": list(array.shape)}
        if binary:
            blob = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
            t["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            t["data"] = array.ravel().tolist()
        tensors.append(t)
    head: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": tensors}
    if request_id is not None:
        head["id"] = request_id
    text = json.dumps(head, separators=(",", ":")).encode()
    if not blobs:
        return text, None
    return b"".join([text, *blobs]), len(text)


def encode_request(inputs: list[tuple[str, np.ndarray]], outputs: list[str],
                   timeout_us: int | None = None) -> tuple[bytes, int]:
    """An infer request body with ``inputs`` as binary data, asking for ``outputs`` as
    binary data, with ``parameters.timeout`` when given (what ``tritonclient`` sends), and
    its JSON header's length (``Inference-Header-Content-Length``)."""
    tensors, blobs = [], []
    for name, array in inputs:
        blob = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"),
                                                  copy=False).tobytes()
        tensors.append({"name": name, "datatype": datatype_of(array.dtype),
                        "shape": list(array.shape),
                        "parameters": {"binary_data_size": len(blob)}})
        blobs.append(blob)
    head: dict[str, Any] = {"inputs": tensors, "outputs": [
        {"name": n, "parameters": {"binary_data": True}} for n in outputs]}
    if timeout_us is not None:
        head["parameters"] = {"timeout": int(timeout_us)}
    text = json.dumps(head, separators=(",", ":")).encode()
    return b"".join([text, *blobs]), len(text)


def decode_response(body: bytes, header_length: str | int | None = None
                    ) -> dict[str, np.ndarray]:
    """The outputs of an infer response body (JSON or binary data)."""
    if header_length is None:
        head, rest = body, b""
    else:
        n = int(header_length)
        head, rest = body[:n], memoryview(body)[n:]
    res = json_object(head, "the response header")
    raw_outputs = res.get("outputs")
    if not isinstance(raw_outputs, list):
        raise ProtocolError("the response has no outputs list")
    out, offset = {}, 0
    for raw in raw_outputs:
        name, array, used = _decode_tensor(raw, rest, offset, "output")
        out[name] = array
        offset += used
    return out


def error_body(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
