"""The one cost-model protocol shared by planner, simulator and runtime.

``latency_ms(model, start, end, batch, share)`` is the execution time in milliseconds of one
batch of ``batch`` samples through blocks ``[start, end)`` of ``model`` on ``share`` (a
fraction of one GPU; on CPU a fraction of the cores). Shares come from the grid the cost model
declares; planners only pick shares and batches from its grids.

``latency_grid`` returns the same numbers for every (batch, share) pair of the grids at once;
planners use it, so a cost model should compute it vectorised and cache it.

A cost model also says what packing must respect on one device (``limits``), how fast a
stage hands a batch's activations to the next stage (``links``), and owns ``cache``: a dict
where planners keep what they derive from it (sorted stage options, fastest chains), so
those tables live exactly as long as the cost model does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from graft.errors import GraftInputError

#: Default share grid: whole percentages, the unit NVIDIA MPS takes.
PERCENT_SHARES: tuple[float, ...] = tuple(round(0.01 * i, 2) for i in range(1, 101))

#: Default batch grid.
DEFAULT_BATCHES: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 20, 24, 32, 48, 64)

#: MPS allows at most 48 client processes per GPU (Volta and later).
MPS_MAX_CLIENTS = 48


@dataclass(frozen=True)
class DeviceLimits:
    """What packing must respect on one accelerator."""

    memory_bytes: int
    #: Memory every stage process holds besides its weights and activations (CUDA context).
    context_bytes: int
    #: Most stage processes one device holds (48 for MPS on Volta and later).
    max_processes: int = MPS_MAX_CLIENTS


#: Hand-off kinds, from cheapest: stages in one process (members of one time-shared slice),
#: processes on one GPU (a device-to-device copy through CUDA IPC), GPUs of one node
#: (NVLink or PCIe), and GPUs of different nodes (the cluster's network,
#: ``graft.plan.cluster``).
PROCESS, DEVICE, INTERCONNECT, NETWORK = "process", "device", "interconnect", "network"
LINK_KINDS = (PROCESS, DEVICE, INTERCONNECT, NETWORK)

#: Fixed cost of one hand-off between processes (ms): an event record and wait, and the
#: copy's launch. An assumption, not a measurement; the runtime's measurement can replace it.
HANDOFF_LATENCY_MS = 0.01


@dataclass(frozen=True)
class Links:
    """How fast one batch's activations move from a stage to the next.

    ``device_bytes_per_s``: between two processes on one device (a copy reads and writes the
    device's memory once each). ``interconnect_bytes_per_s``: between two devices of one node,
    one direction. ``latency_ms``: the fixed cost of one hand-off between processes. Inside
    one process (the members of a time-shared slice) a hand-off costs nothing.
    """

    device_bytes_per_s: float
    interconnect_bytes_per_s: float
    latency_ms: float = HANDOFF_LATENCY_MS
    #: Where ``interconnect_bytes_per_s`` comes from, for the README and the plan's readers.
    source: str = ""

    def bytes_per_s(self, kind: str) -> float:
        if kind == DEVICE:
            return self.device_bytes_per_s
        if kind == INTERCONNECT:
            return self.interconnect_bytes_per_s
        raise ValueError(f"no bandwidth for hand-off kind {kind!r}")


#: Hand-offs between processes of one CPU (shared memory; ``graft profile`` on CPU): one
#: memcpy at a conservative 5 GB/s, whether or not the processes are "on one device".
CPU_LINKS = Links(device_bytes_per_s=5e9, interconnect_bytes_per_s=5e9,
                  source="assumed: one shared-memory memcpy at 5 GB/s")


@runtime_checkable
class CostModel(Protocol):
    name: str
    shares: tuple[float, ...]
    batches: tuple[int, ...]
    limits: DeviceLimits
    links: Links
    #: What planners derive from this cost model (built once, dropped with it).
    cache: dict

    def latency_ms(self, model: str, start: int, end: int, batch: int, share: float) -> float:
        """Execution time of one batch through blocks [start, end) on ``share`` of a device."""
        ...

    def latency_grid(self, model: str, start: int, end: int) -> np.ndarray:
        """Array of shape (len(batches), len(shares)): latency_ms at every grid point."""
        ...


def grid_from_scalar(cost: CostModel, model: str, start: int, end: int) -> np.ndarray:
    """A ``latency_grid`` built from ``latency_ms`` calls, for cost models with no faster way."""
    out = np.empty((len(cost.batches), len(cost.shares)))
    for i, b in enumerate(cost.batches):
        for j, g in enumerate(cost.shares):
            out[i, j] = cost.latency_ms(model, start, end, b, g)
    return out


def check_segment(model: str, num_blocks: int, start: int, end: int) -> None:
    """Raise GraftInputError unless ``0 <= start < end <= num_blocks`` (integers)."""
    ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in (start, end))
    if not ok or not 0 <= start < end <= num_blocks:
        raise GraftInputError(
            f"model {model!r} has {num_blocks} blocks: a segment [start, end) needs integers "
            f"0 <= start < end <= {num_blocks}, got [{start!r}, {end!r})"
        )


def check_batch(batch: int) -> None:
    """Raise GraftInputError unless ``batch`` is an integer >= 1."""
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise GraftInputError(f"batch must be an integer >= 1, got {batch!r}")


def check_share(share: float) -> None:
    """Raise GraftInputError unless ``0 < share <= 1``."""
    if (
        isinstance(share, bool)
        or not isinstance(share, (int, float, np.integer, np.floating))
        or not 0.0 < share <= 1.0 + 1e-9
    ):
        raise GraftInputError(f"share must be a fraction in (0, 1], got {share!r}")
