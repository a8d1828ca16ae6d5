"""Cheapest stage configurations: the (batch, share, replicas) a stage needs for a rate.

For one segment [start, end) of a model, every (batch B, share g) point of the cost model's
grid is an option with execution time e. Serving rate ``rate`` needs
``rules.replicas_needed(rate, B, e)`` replicas, costing ``g * replicas`` GPU. A request
spends ``rules.stage_time_ms(e)`` in the stage (the 2e rule) plus, when the segment does not
end the model, the hand-off of its batch to the next stage (charged across GPUs, the worst
case; ``rules.planned_handoff_ms``): an option's ``time_ms``. A stage whose time budget is
``cap_ms`` may use any option with ``time_ms <= cap_ms``.

``SegmentOptions`` sorts the options of a segment by ``time_ms`` once; ``costs_at`` then
answers the cheapest option for many caps at once (a prefix minimum and a binary search).
Options are built once per cost model and segment and kept in the cost model's ``cache``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graft.cost.base import CostModel
from graft.plan.rules import (
    EPS,
    planned_handoff_ms,
    replicas_for,
    replicas_needed,
    seconds_per_request,
    stage_time_ms,
)

__all__ = ["EPS", "SegmentOptions", "StageConfig", "replicas_needed", "segment_options"]


@dataclass(frozen=True)
class StageConfig:
    """A stage's batch, share (of one replica) and replica count; its execution time; and
    the hand-off its batch is planned to pay to the next stage (0 after the last block)."""

    batch: int
    share: float
    replicas: int
    exec_ms: float
    handoff_ms: float = 0.0

    @property
    def cost(self) -> float:
        return self.share * self.replicas

    @property
    def time_ms(self) -> float:
        """Planned time a request spends in the stage: the 2e rule plus the hand-off."""
        return stage_time_ms(self.exec_ms) + self.handoff_ms


class SegmentOptions:
    """The (batch, share) options of one segment, sorted by the time a request spends in the
    stage (``time_ms``: its stage time plus the planned hand-off)."""

    def __init__(self, cost: CostModel, model: str, start: int, end: int):
        grid = np.asarray(cost.latency_grid(model, start, end), dtype=float)
        batches = np.asarray(cost.batches, dtype=float)
        shares = np.asarray(cost.shares, dtype=float)
        keep = _useful(grid)
        e = grid.ravel()[keep]
        b_idx, g_idx = np.divmod(np.flatnonzero(keep), len(shares))
        batch = batches[b_idx]
        handoff = planned_handoff_ms(cost, model, end, batch)
        time = stage_time_ms(e) + handoff
        order = np.argsort(time, kind="stable")
        self.exec_ms = e[order]
        self.batch = batch[order]
        self.handoff_ms = handoff[order]
        self.share = shares[g_idx][order]
        self.time_ms = time[order]
        #: Replica-seconds a request takes with each option (``rules.seconds_per_request``).
        self.per_request_s = seconds_per_request(self.batch, self.exec_ms)
        #: Least time a request can be planned to spend in this stage.
        self.fastest_time_ms = float(self.time_ms[0])
        #: Least GPU-seconds per request any option costs: share * e / (1000 * batch).
        self.min_share_seconds = float(np.min(self.share * self.exec_ms / (1000 * self.batch)))

    def _costs(self, rate: float, count: int) -> np.ndarray:
        """Cost of the ``count`` fastest options at ``rate``."""
        reps = replicas_for(rate, self.per_request_s[:count])
        reps *= self.share[:count]
        return reps

    def _admitted(self, caps_ms: np.ndarray) -> np.ndarray:
        """How many options (a prefix in time order) fit each cap."""
        return np.searchsorted(self.time_ms, np.asarray(caps_ms) * (1 + EPS), side="right")

    def cost_curve(self, rate: float, caps_ms: np.ndarray) -> np.ndarray:
        """Cheapest cost for each stage time budget in ``caps_ms`` (``inf`` where none fits):
        ``costs_at`` without the option indices, for the planner's inner loop."""
        n = self._admitted(caps_ms)
        count = int(n.max(initial=0))
        out = np.empty(count + 1)
        out[0] = np.inf
        if count:
            np.minimum.accumulate(self._costs(rate, count), out=out[1:])
        return out[n]

    def costs_at(self, rate: float, caps_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cheapest cost and option index for each stage time budget in ``caps_ms``.

        A budget ``cap`` admits options with ``time_ms <= cap``. Infeasible caps get cost
        ``inf`` and index -1.
        """
        n = self._admitted(caps_ms)
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
                           replicas=replicas_needed(rate, b, e), exec_ms=e,
                           handoff_ms=float(self.handoff_ms[index]))

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


def segment_options(cost: CostModel, model: str, start: int, end: int) -> SegmentOptions:
    """Options of segment [start, end), built once per cost model and segment (kept in
    ``cost.cache``)."""
    key = ("segment_options", model, start, end)
    opts = cost.cache.get(key)
    if opts is None:
        opts = cost.cache[key] = SegmentOptions(cost, model, start, end)
    return opts
