"""Cheapest stage configurations: the (batch, share, replicas) a stage needs for a rate.

For one segment [start, end) of a model, every (batch B, share g) point of the cost model's
grid is an option with execution time e. Serving rate ``rate`` needs
``replicas = ceil(rate * e / (1000 * B))`` replicas, costing ``g * replicas`` GPU. The
2e rule bounds a request's time in the stage, so a stage whose time budget is ``cap_ms``
may use any option with ``2 * e <= cap_ms``.

``SegmentOptions`` sorts the options of a segment by e once; ``costs_at`` then answers the
cheapest option for many caps at once (a prefix minimum and a binary search).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from graft.cost.base import CostModel

#: Relative slack for floating-point comparisons of latencies and rates.
EPS = 1e-9


@dataclass(frozen=True)
class StageConfig:
    batch: int
    share: float
    replicas: int
    exec_ms: float

    @property
    def cost(self) -> float:
        return self.share * self.replicas


def replicas_needed(rate: float, batch: int, exec_ms: float) -> int:
    """Fewest replicas with ``replicas * batch * 1000 / exec_ms >= rate``."""
    if rate <= 0:
        return 1
    return max(1, math.ceil(rate * exec_ms / (1000.0 * batch) * (1 - EPS)))


class SegmentOptions:
    """The (batch, share) options of one segment, sorted by execution time."""

    def __init__(self, cost: CostModel, model: str, start: int, end: int):
        grid = np.asarray(cost.latency_grid(model, start, end), dtype=float)
        batches = np.asarray(cost.batches, dtype=float)
        shares = np.asarray(cost.shares, dtype=float)
        b_idx, g_idx = np.meshgrid(np.arange(len(batches)), np.arange(len(shares)), indexing="ij")
        e = grid.ravel()
        keep = _useful(grid)
        order = np.argsort(e[keep], kind="stable")
        self.exec_ms = e[keep][order]
        self.batch = batches[b_idx.ravel()[keep][order]]
        self.share = shares[g_idx.ravel()[keep][order]]
        self.fastest_ms = float(self.exec_ms[0])
        #: Least GPU-seconds per request any option costs: share * e / (1000 * batch).
        self.min_share_seconds = float(np.min(self.share * self.exec_ms / (1000 * self.batch)))

    def _costs(self, rate: float, count: int) -> np.ndarray:
        """Cost of the ``count`` fastest options at ``rate``."""
        e, b = self.exec_ms[:count], self.batch[:count]
        reps = np.maximum(1.0, np.ceil(rate * e / (1000.0 * b) * (1 - EPS)))
        return self.share[:count] * reps

    def cost_curve(self, rate: float, caps_ms: np.ndarray) -> np.ndarray:
        """Cheapest cost for each stage time budget in ``caps_ms`` (``inf`` where none fits):
        ``costs_at`` without the option indices, for the planner's inner loop."""
        n = np.searchsorted(self.exec_ms, np.asarray(caps_ms) / 2.0 * (1 + EPS), side="right")
        costs = self._costs(rate, int(n.max(initial=0)))
        return np.concatenate(([np.inf], np.minimum.accumulate(costs)))[n]

    def costs_at(self, rate: float, caps_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cheapest cost and option index for each stage time budget in ``caps_ms``.

        A budget ``cap`` admits options with ``2 * exec_ms <= cap``. Infeasible caps get cost
        ``inf`` and index -1.
        """
        n = np.searchsorted(self.exec_ms, np.asarray(caps_ms) / 2.0 * (1 + EPS), side="right")
        if n.max(initial=0) == 0:
            return np.full(n.shape, np.inf), np.full(n.shape, -1, dtype=int)
        # only options some cap admits matter: cost those alone
        costs = self._costs(rate, int(n.max()))
        prefix = np.minimum.accumulate(costs)
        # index of the cheapest option among the first n: argmin positions of the prefix min
        best_pos = _prefix_argmin(costs)
        out_cost = np.full(n.shape, np.inf)
        out_idx = np.full(n.shape, -1, dtype=int)
        ok = n > 0
        out_cost[ok] = prefix[n[ok] - 1]
        out_idx[ok] = best_pos[n[ok] - 1]
        return out_cost, out_idx

    def config(self, index: int, rate: float) -> StageConfig:
        e = float(self.exec_ms[index])
        b = int(self.batch[index])
        return StageConfig(batch=b, share=float(self.share[index]),
                           replicas=replicas_needed(rate, b, e), exec_ms=e)

    def cheapest(self, rate: float, cap_ms: float) -> StageConfig | None:
        _, idx = self.costs_at(rate, np.array([cap_ms]))
        return None if idx[0] < 0 else self.config(int(idx[0]), rate)


def _useful(grid: np.ndarray) -> np.ndarray:
    """Mask of options worth keeping: within one batch, a larger share must be faster.

    Past a batch's saturation knee more share buys no speed; those points cost more for the
    same time and are dropped (flattened mask over the (batch, share) grid).
    """
    keep = np.ones_like(grid, dtype=bool)
    running = np.minimum.accumulate(grid, axis=1)
    keep[:, 1:] = grid[:, 1:] < running[:, :-1] * (1 - 1e-12)
    return keep.ravel()


def _prefix_argmin(values: np.ndarray) -> np.ndarray:
    """For each n, the index of the first minimum of values[:n+1]."""
    prefix = np.minimum.accumulate(values)
    is_new = np.empty(len(values), dtype=bool)
    is_new[0] = True
    is_new[1:] = values[1:] < prefix[:-1]
    pos = np.where(is_new, np.arange(len(values)), 0)
    return np.maximum.accumulate(pos)


_CACHE: dict[int, tuple[CostModel, dict[tuple[str, int, int], SegmentOptions]]] = {}


def segment_options(cost: CostModel, model: str, start: int, end: int) -> SegmentOptions:
    """Options of segment [start, end), built once per cost model and segment."""
    holder = _CACHE.get(id(cost))
    if holder is None or holder[0] is not cost:
        holder = (cost, {})
        _CACHE[id(cost)] = holder
    table = holder[1]
    key = (model, start, end)
    opts = table.get(key)
    if opts is None:
        opts = table[key] = SegmentOptions(cost, model, start, end)
    return opts
