"""The one cost-model protocol shared by planner, simulator and runtime.

``latency_ms(model, start, end, batch, share)`` is the execution time in milliseconds of one
batch of ``batch`` samples through blocks ``[start, end)`` of ``model`` on ``share`` (a
fraction of one GPU; on CPU a fraction of the cores). Shares come from the grid the cost model
declares; planners only pick shares and batches from its grids.

``latency_grid`` returns the same numbers for every (batch, share) pair of the grids at once;
planners use it, so a cost model should compute it vectorised and cache it.
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


@runtime_checkable
class CostModel(Protocol):
    name: str
    shares: tuple[float, ...]
    batches: tuple[int, ...]
    limits: DeviceLimits

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


def stage_memory_bytes(
    cost: CostModel, param_bytes: int, max_act_bytes: int, batch: int
) -> int:
    """Device memory one stage process needs: context, weights, two activation buffers."""
    return cost.limits.context_bytes + param_bytes + 2 * batch * max_act_bytes


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
