"""Budget groups of one fragment: the cheapest private instances for its flows.

The flows entering one model at one partition point ``p`` may be served without
re-alignment by private instances ``[p, L)``: sort the flows by budget and cut them into
contiguous groups, each one instance with the cheapest (batch, share, replicas) that carries
the group's rate within its tightest budget. What a GSLICE operator deploys for clients
whose budgets differ; ``gslice`` plans exactly this, and ``graft`` weighs it against
re-alignment for every run of budget classes (``graft.planner.group``).

``FragmentFlows`` finds the cheapest cut exactly, by a dynamic program over the sorted
flows, for any contiguous range of them at once: ``solve(starts)`` fills, for every start
in ``starts``, the least cost of the flows ``[start, j)`` for every ``j``. A group
``[i, j)`` costs ``min_k g_k * replicas(rate_ij, B_k, e_k)`` over the options ``k`` its
tightest budget admits. Only options on the (share, seconds per request) Pareto front can
be cheapest at some rate, so each row of group costs is one small matrix product.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from graft.cost.base import CostModel
from graft.models.catalog import get_model
from graft.plan.rules import EPS, replicas_for
from graft.planner.assemble import StageDraft
from graft.planner.configs import segment_options
from graft.workload.flows import Flow


class FragmentFlows:
    """The flows of one (model, partition), sorted by (budget, id), and the cheapest budget
    groups of any contiguous range of them."""

    def __init__(self, cost: CostModel, model: str, partition: int, flows: Sequence[Flow]):
        self.cost_model = cost
        self.model = model
        self.partition = partition
        self.end = get_model(model).num_blocks
        self.flows = sorted(flows, key=lambda f: (f.budget_ms, f.id))
        self.n = len(self.flows)
        self.budget = np.array([f.budget_ms for f in self.flows])
        self.prefix_rate = np.concatenate(([0.0], np.cumsum([f.rate for f in self.flows])))
        self.opts = segment_options(cost, model, partition, self.end)
        self._best: dict[int, np.ndarray] = {}
        self._parent: dict[int, np.ndarray] = {}

    def _fronts_by_row(self, first: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """For every flow ``i >= first``, the options its budget admits that no other
        admitted option beats on both share and seconds per request
        (``rules.seconds_per_request``): the Pareto front, built incrementally as budgets
        grow."""
        opts = self.opts
        grid = np.asarray(self.cost_model.shares, dtype=float)
        share_idx = np.searchsorted(grid, opts.share - 1e-12)
        per_req = opts.per_request_s
        admitted = np.searchsorted(opts.time_ms, self.budget[first:] * (1 + EPS), side="right")
        best_q = np.full(len(grid), np.inf)  # per share, least seconds per request so far
        fronts: list[tuple[np.ndarray, np.ndarray]] = []
        done = 0
        front = (grid[:0], best_q[:0])
        for a in admitted.tolist():
            if a > done:
                np.minimum.at(best_q, share_idx[done:a], per_req[done:a])
                done = a
                before = np.minimum.accumulate(best_q)
                keep = np.isfinite(best_q)
                keep[1:] &= best_q[1:] < before[:-1] * (1 - 1e-12)
                front = (grid[keep], best_q[keep])
            fronts.append(front)
        return fronts

    @staticmethod
    def _group_costs(front: tuple[np.ndarray, np.ndarray], rates: np.ndarray) -> np.ndarray:
        """Cost of groups of ``rates`` on the cheapest front option each (``inf``: none)."""
        share, per_req = front
        if len(share) == 0:
            return np.full(len(rates), np.inf)
        reps = replicas_for(rates[None, :], per_req[:, None])
        return np.min(share[:, None] * reps, axis=0)

    def solve(self, starts: Sequence[int]) -> None:
        """For every start ``s``, the least cost of the flows ``[s, j)`` for every ``j``
        (``cost(s, j)``); every start is solved in the same pass over group costs."""
        starts = sorted({int(s) for s in starts} - set(self._best))
        if not starts:
            return
        n = self.n
        best = np.full((len(starts), n + 1), np.inf)
        parent = np.full((len(starts), n + 1), -1, dtype=np.intp)
        best[np.arange(len(starts)), starts] = 0.0
        fronts = self._fronts_by_row(starts[0])
        for i in range(starts[0], n):
            reach = best[:, i]
            if not np.isfinite(reach).any():
                continue
            rates = self.prefix_rate[i + 1:] - self.prefix_rate[i]
            row = self._group_costs(fronts[i - starts[0]], rates)
            cand = reach[:, None] + row[None, :]
            better = cand < best[:, i + 1:]
            best[:, i + 1:] = np.where(better, cand, best[:, i + 1:])
            parent[:, i + 1:] = np.where(better, i, parent[:, i + 1:])
        for k, s in enumerate(starts):
            self._best[s], self._parent[s] = best[k], parent[k]

    def cost(self, lo: int, hi: int) -> float:
        """Least cost of serving flows ``[lo, hi)`` in budget groups (0 when empty)."""
        if lo >= hi:
            return 0.0
        self.solve([lo])
        return float(self._best[lo][hi])

    def drafts(self, lo: int, hi: int) -> list[StageDraft]:
        """The budget groups of flows ``[lo, hi)``, one private stage each."""
        if lo >= hi:
            return []
        self.solve([lo])
        parent = self._parent[lo]
        cuts = [hi]
        while cuts[-1] > lo:
            cuts.append(int(parent[cuts[-1]]))
        cuts.reverse()
        out = []
        for a, b in zip(cuts, cuts[1:]):
            flows = self.flows[a:b]
            config = self.opts.cheapest(sum(f.rate for f in flows), float(self.budget[a]))
            assert config is not None, "a solved group has an option"
            out.append(StageDraft(self.model, self.partition, self.end, config, list(flows)))
        return out
