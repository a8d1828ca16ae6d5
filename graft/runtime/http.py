"""The HTTP frontend: the Open Inference Protocol (KServe v2) as Triton serves it, on aiohttp.

One model entry per fragment the plan serves, named ``<model>.p<k>``: the server runs blocks
``[k, L)``. Its input ``INPUT__0`` is FP32 of shape ``[-1, *activation at k]``, its output
``OUTPUT__0`` FP32 ``[-1, *last block's output]``. Endpoints: ``/v2/health/live``,
``/v2/health/ready``, ``/v2`` (server metadata), ``/v2/models/{name}[/versions/{v}]``
(metadata), ``.../ready``, ``.../config``, ``.../infer``, and ``POST /v2/repository/index``.
Errors are 4xx/5xx with ``{"error": "..."}``; a request the plan cannot meet is refused at
once with 503.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import numpy as np
from aiohttp import web

from graft.runtime.engine import (
    Engine,
    Rejected,
    RequestFailed,
    activation_shape,
    budget_from_timeout,
    output_shape,
)
from graft.runtime.protocol import (
    HEADER_LENGTH,
    ProtocolError,
    decode_request,
    encode_response,
    error_body,
)

log = logging.getLogger(__name__)

INPUT_NAME = "INPUT__0"
OUTPUT_NAME = "OUTPUT__0"
VERSION = "1"
SERVER_NAME = "graft"
#: Largest request body accepted (aiohttp's default is 1 MiB): 64 MiB, about a hundred
#: 224x224 fp32 images.
MAX_BODY_BYTES = 64 * 2**20
#: Most samples one request may carry.
MAX_SAMPLES = 256

_NAME = re.compile(r"^(?P<model>[a-z0-9_]+)\.p(?P<p>\d+)$")
ENGINE = web.AppKey("engine", Engine)


def model_name(model: str, partition: int) -> str:
    return f"{model}.p{partition}"


def _error(status: int, message: str) -> web.Response:
    return web.Response(status=status, body=error_body(message),
                        content_type="application/json")


def _json(obj: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=json.dumps(obj).encode(),
                        content_type="application/json")


def _fragment(request: web.Request) -> tuple[str, int]:
    """(model, partition) of the model entry the URL names; ``web.HTTPNotFound`` else."""
    name = request.match_info["name"]
    version = request.match_info.get("version")
    engine = request.app[ENGINE]
    m = _NAME.match(name)
    key = (m["model"], int(m["p"])) if m else None
    if key is None or key not in engine.router.fragments:
        raise _NotFound(f"unknown model {name!r}: this server has "
                        f"{', '.join(model_name(*k) for k in engine.fragments) or 'none'}")
    if version not in (None, "", VERSION):
        raise _NotFound(f"model {name!r} has only version {VERSION}, not {version!r}")
    return key


class _NotFound(Exception):
    pass


def metadata(model: str, partition: int) -> dict[str, Any]:
    return {
        "name": model_name(model, partition),
        "versions": [VERSION],
        "platform": "pytorch_libtorch",
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32",
                    "shape": [-1, *activation_shape(model, partition)]}],
        "outputs": [{"name": OUTPUT_NAME, "datatype": "FP32",
                     "shape": [-1, *output_shape(model)]}],
    }


def config(model: str, partition: int) -> dict[str, Any]:
    return {
        "name": model_name(model, partition),
        "platform": "pytorch_libtorch",
        "max_batch_size": MAX_SAMPLES,
        "input": [{"name": INPUT_NAME, "data_type": "TYPE_FP32",
                   "dims": list(activation_shape(model, partition))}],
        "output": [{"name": OUTPUT_NAME, "data_type": "TYPE_FP32",
                    "dims": list(output_shape(model))}],
    }


def _route(handler):  # noqa: ANN001, ANN202 - a decorator for aiohttp handlers
    """Turn the frontend's exceptions into v2 error responses."""
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except _NotFound as e:
            return _error(404, str(e))
        except ProtocolError as e:
            return _error(e.status, str(e))
        except Rejected as e:
            return _error(503, f"rejected: {e}")
        except RequestFailed as e:
            return _error(504, f"failed: {e}")
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"the request body is larger than the {MAX_BODY_BYTES} bytes "
                               "this server accepts")
    return wrapped


@_route
async def live(request: web.Request) -> web.Response:
    return web.Response(status=200)


@_route
async def ready(request: web.Request) -> web.Response:
    return web.Response(status=200)


@_route
async def server_metadata(request: web.Request) -> web.Response:
    from graft import __version__
    return _json({"name": SERVER_NAME, "version": __version__,
                  "extensions": ["binary_tensor_data", "model_repository"]})


@_route
async def model_metadata(request: web.Request) -> web.Response:
    return _json(metadata(*_fragment(request)))


@_route
async def model_ready(request: web.Request) -> web.Response:
    _fragment(request)
    return web.Response(status=200)


@_route
async def model_config(request: web.Request) -> web.Response:
    return _json(config(*_fragment(request)))


@_route
async def repository_index(request: web.Request) -> web.Response:
    engine = request.app[ENGINE]
    return _json([{"name": model_name(*k), "version": VERSION, "state": "READY"}
                  for k in engine.fragments])


@_route
async def infer(request: web.Request) -> web.Response:
    model, partition = _fragment(request)
    body = await request.read()
    req = decode_request(body, request.headers.get(HEADER_LENGTH))
    x = _input(req.inputs, model, partition)
    y = await request.app[ENGINE].infer(model, partition, x, budget_from_timeout(req.timeout_us))
    binary = req.binary_default
    if req.outputs is not None:
        unknown = [n for n, _ in req.outputs if n != OUTPUT_NAME]
        if unknown:
            raise ProtocolError(f"unknown output {unknown[0]!r}: the output is {OUTPUT_NAME}")
        binary = any(b for _, b in req.outputs)
    payload, length = encode_response(model_name(model, partition), VERSION, req.id,
                                      [(OUTPUT_NAME, y, binary)])
    if length is None:
        return web.Response(body=payload, content_type="application/json")
    return web.Response(body=payload, content_type="application/octet-stream",
                        headers={HEADER_LENGTH: str(length)})


def _input(inputs: dict[str, np.ndarray], model: str, partition: int) -> np.ndarray:
    """The request's one input, checked against the fragment's activation shape."""
    if set(inputs) != {INPUT_NAME}:
        raise ProtocolError(f"{model_name(model, partition)} takes one input, {INPUT_NAME}; "
                            f"got {sorted(inputs)}")
    x = inputs[INPUT_NAME]
    want = activation_shape(model, partition)
    if x.dtype != np.float32:
        raise ProtocolError(f"{INPUT_NAME} must be FP32, got {x.dtype}")
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise ProtocolError(f"{INPUT_NAME} of {model_name(model, partition)} must have shape "
                            f"[n, {', '.join(map(str, want))}], got {list(x.shape)}")
    if not 1 <= x.shape[0] <= MAX_SAMPLES:
        raise ProtocolError(f"{INPUT_NAME} must hold 1 to {MAX_SAMPLES} samples, got "
                            f"{x.shape[0]}")
    if not np.all(np.isfinite(x)):
        raise ProtocolError(f"{INPUT_NAME} holds NaN or infinite values")
    return x


def make_app(engine: Engine) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[ENGINE] = engine
    r = app.router
    r.add_get("/v2/health/live", live)
    r.add_get("/v2/health/ready", ready)
    r.add_get("/v2", server_metadata)
    r.add_post("/v2/repository/index", repository_index)
    for prefix in ("/v2/models/{name}", "/v2/models/{name}/versions/{version}"):
        r.add_get(prefix, model_metadata)
        r.add_get(prefix + "/ready", model_ready)
        r.add_get(prefix + "/config", model_config)
        r.add_post(prefix + "/infer", infer)
    return app
