"""The analytic GPU cost model: a per-block roofline with launch cost and batch saturation.

A stage runs as the runtime runs it: its kernels captured in one CUDA graph, so there are no
Python or launch gaps beyond the kernels' own. For block ``b`` (FLOPs ``f``, weights ``P``,
activation traffic ``T`` per sample, ``k`` kernels) at batch ``B`` on share ``g`` of a GPU with
peak rate ``R`` (FLOP/s), bandwidth ``W`` and ``N`` SMs::

    F      = phi * N                         work (FLOPs) one kernel needs to fill the GPU
    s      = min(1, B f / (k F))             fraction of the GPU the batch can fill
    u      = (g^-p + s^-p - 1)^(-1/p)        usable fraction: a smooth min(g, s), exact at
                                             g = 1 (u = s) and at s = 1 (u = g)
    comp   = B f / (eta R u)
    mem    = (P + B T) / (mu W min(1, kappa g))
    t_b    = max(comp, mem) + k tau          roofline, plus a fixed cost per kernel
    stage  = sum of t_b over [start, end) + c0

A share above what the batch can fill (``g > s``) buys nothing: the GSLICE knee. A slice of
the SMs can drive more than its share of the DRAM bandwidth (``kappa > 1``). The properties
the planner relies on hold by construction: latency is non-increasing in ``g``,
non-decreasing in ``B``, latency per sample is non-increasing in ``B``, and a stage is the sum
of its blocks plus ``c0``. ``docs/cost_model.md`` explains every term and its limits.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np

from graft.cost.base import (
    DEFAULT_BATCHES,
    HANDOFF_LATENCY_MS,
    MPS_MAX_CLIENTS,
    PERCENT_SHARES,
    DeviceLimits,
    Links,
    check_batch,
    check_segment,
    check_share,
)
from graft.cost.devices import DEVICE_COPY_FRACTION, GPU_CONTEXT_BYTES, GPUS, GpuSpec
from graft.errors import UnknownNameError
from graft.models.catalog import get_model
from graft.models.spec import ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalyticParams:
    """The constants of the analytic model (see the module docstring for the equations)."""

    #: eta: fraction of ``peak_flops`` a saturated kernel sustains.
    eta: float
    #: phi: FLOPs per SM one kernel needs to fill the GPU (F = phi * SMs).
    fill_flops_per_sm: float
    #: p: how sharply the usable fraction turns from ``g`` to ``s`` (large p: a hard min).
    share_smoothness: float
    #: kappa: a share ``g`` drives ``min(1, kappa g)`` of the DRAM bandwidth.
    bandwidth_knee: float
    #: mu: fraction of the datasheet bandwidth a kernel sustains.
    mem_efficiency: float
    #: tau: time every kernel costs beyond its roofline time (ms), inside a CUDA graph.
    kernel_ms: float
    #: c0: fixed cost of one batch through a stage (ms): the CUDA-graph launch and the
    #: synchronisation on its end. Assumed (0.02 ms), not fitted: the runtime measures it and
    #: can set it (``analytic:<gpu>,batch_overhead_ms=<ms>``).
    batch_overhead_ms: float


# The fitted constants: ``python -m graft.cost.calibration --fit`` (graft.cost.calibration.fit,
# scipy least squares on log latency), then rounded. Step 1 fits eta (V100), phi, p, kappa and
# tau to ResNet-50 on a V100, TensorRT FP32, batch 1-64 x MPS 10-100 % (iGniter, 145 points):
# median |relative error| 1.9 % with the rounded values, max 8.5 %. mu = 0.9 and c0 = 0.02 ms
# are assumptions, not fitted (the data cannot tell them from eta and tau).
# docs/calibration.md has every point.
SHAPE = AnalyticParams(
    eta=0.954,
    fill_flops_per_sm=1.01e6,
    share_smoothness=1.85,
    bandwidth_knee=1.34,
    mem_efficiency=0.9,
    kernel_ms=0.00827,
    batch_overhead_ms=0.02,
)

#: eta per GPU. V100: step 1 above. T4: step 2, fitted with the shape fixed to the NVIDIA
#: DeepLearningExamples ResNet-50 PyTorch FP32 T4 curve at batch >= 16 (median error 1.0 %,
#: max 3.0 %); the T4's 70 W cap holds its clock well below boost, hence the low value.
#: Tensor-core presets (TF32): step 3, the A100 Paddle-TRT TF32 ResNet-50 throughput at batch
#: 256 as a fraction of the dense TF32 peak (a lower bound: the model's unfused traffic makes
#: ResNet-50 memory-bound there, so the curve cannot pin eta through the model). H100 and H200
#: have no FP32/TF32 curve in the data and take the A100's value.
EFFICIENCY: dict[str, float] = {
    "t4": 0.430,
    "v100": 0.954,
    "a100": 0.452,
    "h100": 0.452,
    "h200": 0.452,
}


def params_for(gpu: str) -> AnalyticParams:
    """The fitted constants for preset ``gpu``."""
    return replace(SHAPE, eta=EFFICIENCY[gpu])


@dataclass(frozen=True)
class BlockArrays:
    """The per-block columns of a model the analytic model reads, as float arrays."""

    flops: np.ndarray
    param_bytes: np.ndarray
    traffic_bytes: np.ndarray
    kernels: np.ndarray

    @classmethod
    def of(cls, spec: ModelSpec) -> BlockArrays:
        blocks = spec.blocks
        return cls(
            flops=np.array([b.flops for b in blocks], dtype=float),
            param_bytes=np.array([b.param_bytes for b in blocks], dtype=float),
            traffic_bytes=np.array([b.traffic_bytes for b in blocks], dtype=float),
            kernels=np.array([max(1, b.kernels) for b in blocks], dtype=float),
        )


def _usable_work(work: np.ndarray, fill: np.ndarray, g: np.ndarray, p: float) -> np.ndarray:
    """``work / u`` with ``u = (g^-p + s^-p - 1)^(-1/p)`` and ``s = min(1, work / fill)``.

    Written as ``((work/g)^p + max(work, fill)^p - work^p)^(1/p)``: finite when ``work`` is 0,
    exact on the edges (``u = g`` when ``s = 1``, ``u = s`` when ``g = 1``).
    """
    top = np.maximum(work / g, np.maximum(work, fill))
    safe = np.where(top > 0, top, 1.0)
    inner = (work / g / safe) ** p + (np.maximum(work, fill) / safe) ** p - (work / safe) ** p
    return np.where(top > 0, safe * np.maximum(inner, 0.0) ** (1.0 / p), 0.0)


def block_times_ms(
    blocks: BlockArrays,
    batches: np.ndarray,
    shares: np.ndarray,
    gpu: GpuSpec,
    prm: AnalyticParams,
) -> np.ndarray:
    """Per-block latency (ms), shape ``(num_blocks, len(batches), len(shares))``."""
    f = blocks.flops[:, None, None]
    k = blocks.kernels[:, None, None]
    p_bytes = blocks.param_bytes[:, None, None]
    t_bytes = blocks.traffic_bytes[:, None, None]
    b = np.asarray(batches, dtype=float)[None, :, None]
    g = np.asarray(shares, dtype=float)[None, None, :]
    rate = prm.eta * gpu.peak_flops / 1e3  # FLOPs per ms
    fill = prm.fill_flops_per_sm * gpu.sms
    work = b * f
    comp = _usable_work(work, k * fill, g, prm.share_smoothness) / rate
    bw = prm.mem_efficiency * gpu.mem_bandwidth / 1e3 * np.minimum(1.0, prm.bandwidth_knee * g)
    mem = (p_bytes + b * t_bytes) / bw
    return np.maximum(comp, mem) + k * prm.kernel_ms


#: The parameters a name may set after the preset (``analytic:v100,batch_overhead_ms=0.05``):
#: the two fixed costs the runtime measures rather than the datasheet gives.
TUNABLE = ("batch_overhead_ms", "handoff_latency_ms")


class AnalyticCostModel:
    """``analytic:<gpu>``: the roofline model above on one GPU preset.

    ``latency_grid`` is a cached numpy array: per-block grids are computed once per model and
    summed with prefix sums, so a segment's grid is one subtraction.

    ``batch_overhead_ms`` (c0, per batch) and ``handoff_latency_ms`` (the fixed cost of one
    hand-off between processes) are assumptions with defaults (0.02 ms, 0.01 ms); a measured
    value replaces them, and the model's name then records it
    (``analytic:v100,batch_overhead_ms=0.05``) so that a plan names the model it was made with.
    """

    def __init__(
        self,
        gpu: str | GpuSpec,
        *,
        params: AnalyticParams | None = None,
        shares: tuple[float, ...] = PERCENT_SHARES,
        batches: tuple[int, ...] = DEFAULT_BATCHES,
        batch_overhead_ms: float | None = None,
        handoff_latency_ms: float = HANDOFF_LATENCY_MS,
    ) -> None:
        if isinstance(gpu, str):
            if gpu not in GPUS:
                raise UnknownNameError("GPU preset", gpu, list(GPUS))
            gpu = GPUS[gpu]
        self.gpu = gpu
        self.params = params if params is not None else params_for(gpu.key)
        self.name = f"analytic:{gpu.key}"
        if batch_overhead_ms is not None:
            self.params = replace(self.params, batch_overhead_ms=float(batch_overhead_ms))
            self.name += f",batch_overhead_ms={batch_overhead_ms:g}"
        if handoff_latency_ms != HANDOFF_LATENCY_MS:
            self.name += f",handoff_latency_ms={handoff_latency_ms:g}"
        self.shares = tuple(float(s) for s in shares)
        self.batches = tuple(int(b) for b in batches)
        self.limits = DeviceLimits(
            memory_bytes=gpu.memory_bytes,
            context_bytes=GPU_CONTEXT_BYTES,
            max_processes=MPS_MAX_CLIENTS,
        )
        self.links = Links(
            device_bytes_per_s=DEVICE_COPY_FRACTION * gpu.mem_bandwidth,
            interconnect_bytes_per_s=gpu.interconnect_bytes_per_s,
            latency_ms=float(handoff_latency_ms),
            source=gpu.interconnect,
        )
        self.cache: dict = {}
        self._batch_index = {b: i for i, b in enumerate(self.batches)}
        self._share_index = {round(s, 9): j for j, s in enumerate(self.shares)}
        self._prefix: dict[str, np.ndarray] = {}
        self._grids: dict[tuple[str, int, int], np.ndarray] = {}
        self._blocks: dict[str, BlockArrays] = {}

    def __repr__(self) -> str:
        return f"AnalyticCostModel({self.name!r})"

    def _model(self, model: str) -> BlockArrays:
        arrays = self._blocks.get(model)
        if arrays is None:
            arrays = BlockArrays.of(get_model(model))
            self._blocks[model] = arrays
        return arrays

    def _prefix_grid(self, model: str) -> np.ndarray:
        prefix = self._prefix.get(model)
        if prefix is None:
            per_block = block_times_ms(
                self._model(model),
                np.array(self.batches),
                np.array(self.shares),
                self.gpu,
                self.params,
            )
            prefix = np.concatenate([np.zeros((1, *per_block.shape[1:])), per_block.cumsum(0)])
            self._prefix[model] = prefix
        return prefix

    def latency_grid(self, model: str, start: int, end: int) -> np.ndarray:
        key = (model, start, end)
        grid = self._grids.get(key)
        if grid is None:
            check_segment(model, len(self._model(model).flops), start, end)
            prefix = self._prefix_grid(model)
            grid = prefix[end] - prefix[start] + self.params.batch_overhead_ms
            grid.flags.writeable = False
            self._grids[key] = grid
        return grid

    def latency_ms(self, model: str, start: int, end: int, batch: int, share: float) -> float:
        i = self._batch_index.get(batch) if isinstance(batch, (int, np.integer)) else None
        j = self._share_index.get(round(share, 9)) if isinstance(share, float) else None
        if i is not None and j is not None and not isinstance(batch, bool):
            return float(self.latency_grid(model, start, end)[i, j])
        arrays = self._model(model)
        check_segment(model, len(arrays.flops), start, end)
        check_batch(batch)
        check_share(share)
        sub = BlockArrays(
            flops=arrays.flops[start:end],
            param_bytes=arrays.param_bytes[start:end],
            traffic_bytes=arrays.traffic_bytes[start:end],
            kernels=arrays.kernels[start:end],
        )
        per_block = block_times_ms(
            sub, np.array([batch]), np.array([min(float(share), 1.0)]), self.gpu, self.params
        )
        return float(per_block.sum() + self.params.batch_overhead_ms)
