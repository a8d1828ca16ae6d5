"""Step 3 of the graft planner: re-align one group of fragments into a staircase of stages.

The fragments of a group (one per partition point, p_1 < ... < p_k) share a *trunk*: a chain
of stages that starts at some kept point and runs to the last block L. Kept points are a
subset of the partition points; a trunk stage runs from one kept point to the next (or to
L) and carries every fragment that entered at or before its start, so later stages batch
more traffic. A fragment whose point is not kept gets a private *head* stage from its point
to the next kept point, where it joins the trunk. Keeping every point is the full
staircase; keeping none gives every fragment a private stage (what ``gslice`` does).

A dynamic program chooses the kept points, splits every fragment's budget over the stages it
traverses, and gives each stage its cheapest (batch, share, replicas), exactly for a
discretised trunk budget: ``G[j][T]`` is the least cost of the trunk from kept point ``j``
to L, plus the heads that join it after ``j``, when the trunk's 2e times sum to at most
``T`` steps. Heads get the exact remaining budget of their fragment, not a rounded one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from graft.cost.base import CostModel
from graft.models.catalog import get_model
from graft.planner.assemble import StageDraft
from graft.planner.configs import segment_options
from graft.planner.merge import Fragment

DEFAULT_STEPS = 96


@dataclass
class Alignment:
    cost: float
    drafts: list[StageDraft]


def realign(fragments: list[Fragment], cost: CostModel, steps: int = DEFAULT_STEPS, *,
            keep_all: bool = False) -> Alignment:
    """The cheapest staircase for ``fragments`` (one per partition point, same model);
    ``keep_all``: the full staircase (every point kept, no private heads)."""
    frags = sorted(fragments, key=lambda f: f.partition)
    assert len({f.partition for f in frags}) == len(frags), "collapse by partition first"
    return _Staircase(frags, cost, steps, keep_all).solve()


class _Staircase:
    def __init__(self, frags: list[Fragment], cost: CostModel, steps: int, keep_all: bool):
        self.frags = frags
        self.keep_all = keep_all
        self.cost = cost
        self.model = frags[0].model
        self.k = len(frags)
        self.L = get_model(self.model).num_blocks
        # positions of kept-point candidates; index k stands for L (end of the model)
        self.pos = [f.partition for f in frags] + [self.L]
        self.D = steps
        self.step_ms = max(f.budget_ms for f in frags) / steps
        self.grid_ms = np.arange(steps + 1) * self.step_ms
        self.prefix_rate = np.cumsum([f.rate for f in frags])
        self.budget_idx = [min(steps, int(np.floor(f.budget_ms / self.step_ms * (1 + 1e-12))))
                           for f in frags]
        diff = np.arange(steps + 1)[:, None] - np.arange(steps + 1)[None, :]
        self.diff_idx = np.where(diff >= 0, diff, steps + 1)

    # --- cost vectors -------------------------------------------------------------------
    def trunk_costs(self, j: int, nxt: int) -> np.ndarray:
        """Cost of trunk stage [pos j, pos nxt) for 0..D steps of budget, padded with one
        infeasible entry (index D + 1) for the min-plus product."""
        opts = segment_options(self.cost, self.model, self.pos[j], self.pos[nxt])
        return np.append(opts.cost_curve(float(self.prefix_rate[j]), self.grid_ms), np.inf)

    def head_costs(self, i: int, nxt: int) -> np.ndarray:
        """Cost of fragment i's head [p_i, pos nxt) when the trunk after it may take 0..D
        steps: the head gets the rest of the fragment's exact budget."""
        f = self.frags[i]
        opts = segment_options(self.cost, self.model, f.partition, self.pos[nxt])
        caps = f.budget_ms - self.grid_ms
        c = opts.cost_curve(f.rate, np.maximum(caps, 0.0))
        c[caps < 0] = np.inf
        return c

    # --- dynamic program ----------------------------------------------------------------
    def solve(self) -> Alignment:
        k, D = self.k, self.D
        G = np.full((k + 1, D + 1), np.inf)
        G[k] = 0.0  # the trunk after L takes no time and costs nothing
        choice_next = np.zeros((k, D + 1), dtype=int)
        choice_rest = np.zeros((k, D + 1), dtype=int)
        # heads[nxt]: total head cost of the fragments strictly between j and nxt, kept up
        # to date as j walks down (each step adds fragment j + 1's head into every nxt)
        heads = {nxt: np.zeros(D + 1) for nxt in range(k + 1)}
        rows = np.arange(D + 1)
        total = np.empty((D + 1, D + 1))
        for j in range(k - 1, -1, -1):
            for nxt in range(j + 2, k + 1):
                heads[nxt] = heads[nxt] + self.head_costs(j + 1, nxt)
            best = np.full(D + 1, np.inf)
            for nxt in range(j + 1, j + 2 if self.keep_all else k + 1):
                # total[T, T'] = trunk stage cost with T - T' steps + the rest with T'
                np.take(self.trunk_costs(j, nxt), self.diff_idx, out=total)
                total += heads[nxt] + G[nxt]
                arg = np.argmin(total, axis=1)
                val = total[rows, arg]
                better = val < best
                best[better] = val[better]
                choice_next[j, better] = nxt
                choice_rest[j, better] = arg[better]
            best[self.budget_idx[j] + 1:] = np.inf  # fragment j enters the trunk here
            G[j] = best
        for nxt in range(1, k + 1):  # the fragment 0 heads complete the sums for j = -1
            heads[nxt] = heads[nxt] + self.head_costs(0, nxt)
        # the first kept point (k: none, every fragment runs privately to L)
        top_cost, top_first, top_rest = np.inf, k, 0
        for first in range(1 if self.keep_all else k + 1):
            total = heads[first] + G[first]
            t = int(np.argmin(total))
            if total[t] < top_cost:
                top_cost, top_first, top_rest = float(total[t]), first, t
        if not np.isfinite(top_cost):
            raise ValueError(f"no feasible alignment for {self.model} fragments "
                             f"{[f.partition for f in self.frags]}")
        return Alignment(top_cost, self._drafts(top_first, top_rest, choice_next, choice_rest))

    def _drafts(self, first: int, rest: int, choice_next: np.ndarray,
                choice_rest: np.ndarray) -> list[StageDraft]:
        drafts: list[StageDraft] = []
        self._add_heads(drafts, -1, first, rest)
        j, T = first, rest
        while j < self.k:
            nxt, T_next = int(choice_next[j, T]), int(choice_rest[j, T])
            opts = segment_options(self.cost, self.model, self.pos[j], self.pos[nxt])
            config = opts.cheapest(float(self.prefix_rate[j]), float(self.grid_ms[T - T_next]))
            assert config is not None
            flows = [fl for f in self.frags[: j + 1] for fl in f.flows]
            drafts.append(StageDraft(self.model, self.pos[j], self.pos[nxt], config, flows,
                                     cap_ms=(T - T_next) * self.step_ms))
            self._add_heads(drafts, j, nxt, T_next)
            j, T = nxt, T_next
        return drafts

    def _add_heads(self, drafts: list[StageDraft], j: int, nxt: int, T: int) -> None:
        for i in range(j + 1, nxt):
            f = self.frags[i]
            opts = segment_options(self.cost, self.model, f.partition, self.pos[nxt])
            config = opts.cheapest(f.rate, f.budget_ms - float(self.grid_ms[T]))
            assert config is not None
            drafts.append(StageDraft(self.model, f.partition, self.pos[nxt], config,
                                     list(f.flows), cap_ms=f.budget_ms - T * self.step_ms))
