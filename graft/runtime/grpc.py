"""The gRPC frontend: Triton's ``GRPCInferenceService`` (the protos that ship with
``tritonclient[grpc]``) on ``grpc.aio``, over the same engine and model entries as HTTP.

Inputs come as ``raw_input_contents`` (what ``tritonclient`` sends) or typed ``contents``;
outputs go back as ``raw_output_contents``. The request's budget is its ``timeout``
parameter in microseconds. Errors: an unknown model is NOT_FOUND, a malformed request
INVALID_ARGUMENT, a request the plan cannot meet UNAVAILABLE, a late one DEADLINE_EXCEEDED.
Run it on the default asyncio loop: ``grpc.aio`` stalls under uvloop.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import grpc
import numpy as np
from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

from graft.runtime.engine import Engine, Rejected, RequestFailed, budget_from_timeout
from graft.runtime.forward import Forwarder
from graft.runtime.protocol import (
    DATATYPES,
    MAX_ELEMENTS,
    MAX_REQUEST_BYTES,
    MAX_TIMEOUT_US,
    ProtocolError,
)
from graft.runtime.repository import (
    OUTPUT_NAME,
    SERVER_NAME,
    VERSION,
    NotFound,
    check_input,
    check_outputs,
    config,
    fragment,
    metadata,
    model_name,
)

log = logging.getLogger(__name__)

_CONTENTS = {"FP32": "fp32_contents", "FP64": "fp64_contents", "INT32": "int_contents",
             "INT64": "int64_contents", "UINT32": "uint_contents", "UINT64": "uint64_contents",
             "BOOL": "bool_contents"}


def decode_inputs(request: Any) -> dict[str, np.ndarray]:
    """The inputs of a ``ModelInferRequest`` as arrays."""
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise ProtocolError(f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs")
    out: dict[str, np.ndarray] = {}
    for i, t in enumerate(request.inputs):
        dtype = DATATYPES.get(t.datatype)
        if dtype is None:
            raise ProtocolError(f"input {t.name!r}: datatype must be one of {sorted(DATATYPES)},"
                                f" got {t.datatype!r}")
        shape = tuple(int(d) for d in t.shape)
        if any(d < 0 for d in shape) or math.prod(shape) > MAX_ELEMENTS:
            raise ProtocolError(f"input {t.name!r}: bad shape {list(shape)}")
        count = math.prod(shape)
        if raw:
            if len(raw[i]) != count * dtype.itemsize:
                raise ProtocolError(f"input {t.name!r}: {len(raw[i])} bytes of raw contents "
                                    f"for shape {list(shape)} of {t.datatype} "
                                    f"({count * dtype.itemsize} bytes)")
            array = np.frombuffer(raw[i], dtype=dtype).reshape(shape)
        else:
            field = _CONTENTS.get(t.datatype)
            values = list(getattr(t.contents, field)) if field else []
            if len(values) != count:
                raise ProtocolError(f"input {t.name!r}: {len(values)} values for shape "
                                    f"{list(shape)}")
            array = np.asarray(values, dtype=dtype).reshape(shape)
        if t.name in out:
            raise ProtocolError(f"input {t.name!r} is given twice")
        out[t.name] = array
    return out


def _timeout_us(request: Any) -> int | None:
    if "timeout" not in request.parameters:
        return None
    value = request.parameters["timeout"].int64_param
    if not 0 < value <= MAX_TIMEOUT_US:
        raise ProtocolError(f"parameters.timeout must be microseconds in (0, {MAX_TIMEOUT_US}]"
                            f", got {value}")
    return value


class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """Triton's inference service over an ``Engine`` (on a node of a cluster, through its
    ``Forwarder``: requests for other nodes' entries are sent on)."""

    def __init__(self, engine: Engine, forwarder: Forwarder | None = None) -> None:
        self.engine = engine
        self.forwarder = forwarder

    def _entries(self) -> list[tuple[str, int]]:
        """The fragment entries served: the plan's, or on a node of a cluster the cluster's."""
        return self.forwarder.fragments if self.forwarder is not None else self.engine.fragments

    async def _fail(self, context: Any, e: Exception) -> None:
        codes = {NotFound: grpc.StatusCode.NOT_FOUND,
                 ProtocolError: grpc.StatusCode.INVALID_ARGUMENT,
                 Rejected: grpc.StatusCode.UNAVAILABLE,
                 RequestFailed: grpc.StatusCode.DEADLINE_EXCEEDED}
        prefix = {Rejected: "rejected: ", RequestFailed: "failed: "}.get(type(e), "")
        await context.abort(codes[type(e)], f"{prefix}{e}")

    async def ServerLive(self, request, context):  # noqa: N802, ANN001, ANN201
        return service_pb2.ServerLiveResponse(live=True)

    async def ServerReady(self, request, context):  # noqa: N802, ANN001, ANN201
        return service_pb2.ServerReadyResponse(ready=True)

    async def ModelReady(self, request, context):  # noqa: N802, ANN001, ANN201
        try:
            key = fragment(request.name, request.version, self._entries)
        except NotFound:
            return service_pb2.ModelReadyResponse(ready=False)
        return service_pb2.ModelReadyResponse(ready=key in self._entries())

    async def ServerMetadata(self, request, context):  # noqa: N802, ANN001, ANN201
        from graft import __version__
        return service_pb2.ServerMetadataResponse(
            name=SERVER_NAME, version=__version__,
            extensions=["binary_tensor_data", "model_repository"])

    async def ModelMetadata(self, request, context):  # noqa: N802, ANN001, ANN201
        try:
            meta = metadata(*fragment(request.name, request.version, self._entries))
        except NotFound as e:
            await self._fail(context, e)
        tensor = service_pb2.ModelMetadataResponse.TensorMetadata
        return service_pb2.ModelMetadataResponse(
            name=meta["name"], versions=meta["versions"], platform=meta["platform"],
            inputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                    for t in meta["inputs"]],
            outputs=[tensor(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                     for t in meta["outputs"]])

    async def ModelConfig(self, request, context):  # noqa: N802, ANN001, ANN201
        try:
            cfg = config(*fragment(request.name, request.version, self._entries))
        except NotFound as e:
            await self._fail(context, e)
        fp32 = model_config_pb2.DataType.Value("TYPE_FP32")
        return service_pb2.ModelConfigResponse(config=model_config_pb2.ModelConfig(
            name=cfg["name"], platform=cfg["platform"], max_batch_size=cfg["max_batch_size"],
            input=[model_config_pb2.ModelInput(name=t["name"], data_type=fp32, dims=t["dims"])
                   for t in cfg["input"]],
            output=[model_config_pb2.ModelOutput(name=t["name"], data_type=fp32,
                                                 dims=t["dims"]) for t in cfg["output"]]))

    async def RepositoryIndex(self, request, context):  # noqa: N802, ANN001, ANN201
        index = service_pb2.RepositoryIndexResponse.ModelIndex
        return service_pb2.RepositoryIndexResponse(models=[
            index(name=model_name(*k), version=VERSION, state="READY")
            for k in self._entries()])

    async def ModelInfer(self, request, context):  # noqa: N802, ANN001, ANN201
        t0 = time.perf_counter()
        try:
            return await self._infer(request, context)
        finally:
            self.engine.metrics.server.labels("grpc").observe(time.perf_counter() - t0)

    async def _infer(self, request, context):  # noqa: ANN001, ANN202
        try:
            model, partition = fragment(request.model_name, request.model_version,
                                        self._entries)
            x = check_input(decode_inputs(request), model, partition)
            check_outputs([o.name for o in request.outputs])
            budget = budget_from_timeout(_timeout_us(request))
            y = await (self.forwarder or self.engine).infer(model, partition, x, budget)
        except (NotFound, ProtocolError, Rejected, RequestFailed) as e:
            await self._fail(context, e)
        y = np.ascontiguousarray(y, dtype="<f4")
        out = service_pb2.ModelInferResponse.InferOutputTensor(
            name=OUTPUT_NAME, datatype="FP32", shape=list(y.shape))
        return service_pb2.ModelInferResponse(
            model_name=request.model_name, model_version=VERSION, id=request.id,
            outputs=[out], raw_output_contents=[y.tobytes()])


async def start_grpc(engine: Engine, host: str, port: int,
                     forwarder: Forwarder | None = None) -> tuple[Any, int]:
    """Start the gRPC server; returns it and the port it bound."""
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", MAX_REQUEST_BYTES),
        ("grpc.max_send_message_length", MAX_REQUEST_BYTES),
    ])
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(engine, forwarder), server)
    bound = server.add_insecure_port(f"{host}:{port}")
    if bound == 0:
        raise OSError(f"cannot listen on {host}:{port}")
    await server.start()
    return server, bound
