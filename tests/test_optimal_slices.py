"""The slice part of the optimal MILP: exact against brute force on tiny workloads."""

import itertools
import math
import random

import numpy as np
import pytest

from graft.models.catalog import get_model
from graft.plan import rules
from graft.plan.verify import verify
from graft.planner.graft_planner import GraftPlanner
from graft.planner.optimal import OptimalPlanner
from graft.planner.optimal_slices import _rate_slack_pairs
from graft.workload.flows import Flow, Workload

from toycost import ToyCost

L = get_model("tiny").num_blocks
#: a 2 % share grid and four batches keep the brute force small
COARSE = ToyCost(overhead_ms=0.3, shares=tuple(round(0.02 * i, 2) for i in range(1, 51)),
                 batches=(1, 2, 4, 8))


def _stage_options(cost, seg: tuple[int, int], rate: float) -> list[tuple[float, float]]:
    """(time, cost) Pareto front of one 2e stage on ``seg`` carrying ``rate``."""
    grid = np.asarray(cost.latency_grid("tiny", *seg))
    points = []
    for bi, b in enumerate(cost.batches):
        h = float(rules.planned_handoff_ms(cost, "tiny", seg[1], b))
        for gi, g in enumerate(cost.shares):
            e = float(grid[bi, gi])
            points.append((2 * e + h, g * rules.replicas_needed(rate, b, e)))
    front, low = [], math.inf
    for t, c in sorted(points):
        if c < low - 1e-12:
            front.append((t, c))
            low = c
    return front


def _slice_options(cost, stages, group, rate) -> list[tuple[dict[int, float], float]]:
    """Every way ``group`` (stage indices) time-shares one slice: (member times, share)."""
    out = []
    grids = [np.asarray(cost.latency_grid("tiny", *stages[s][0])) for s in group]
    for gi, g in enumerate(cost.shares):
        for bis in itertools.product(range(len(cost.batches)), repeat=len(group)):
            es = [float(grid[bi, gi]) for grid, bi in zip(grids, bis)]
            d = sum(es)
            if any(rate[s] * d > 1000 * cost.batches[bi] * (1 + 1e-9)
                   for s, bi in zip(group, bis)):
                continue
            out.append(({s: d + e + float(rules.planned_handoff_ms(
                cost, "tiny", stages[s][0][1], cost.batches[bi]))
                for s, bi, e in zip(group, bis, es)}, g))
    return out


def brute_force(cost, a: Flow, b: Flow) -> float:
    """The least total share of any plan (2e stages, at most one slice) for flows ``a``
    (partition p_a) and ``b`` (p_b > p_a): every route shape, every option, every slice."""
    p, q = a.partition, b.partition
    shapes = [[((p, L), "a"), ((q, L), "b")],
              [((p, q), "a"), ((q, L), "ab")],
              [((p, q), "a"), ((q, L), "a"), ((q, L), "b")]]
    best = math.inf
    for stages in shapes:
        rate = [sum(f.rate for f in (a, b) if f.id in fs) for _, fs in stages]
        groups = [()] + [c for k in range(2, len(stages) + 1)
                         for c in itertools.combinations(range(len(stages)), k)]
        for group in groups:
            slices = _slice_options(cost, stages, group, rate) if group else [({}, 0.0)]
            solo = [s for s in range(len(stages)) if s not in group]
            fronts = [_stage_options(cost, stages[s][0], rate[s]) for s in solo]
            for fixed, share in slices:
                for choice in itertools.product(*fronts):
                    times = {**fixed, **{s: t for s, (t, _) in zip(solo, choice)}}
                    if all(sum(times[s] for s, (_, fs) in enumerate(stages) if f.id in fs)
                           <= f.budget_ms * (1 + 1e-9) for f in (a, b)):
                        best = min(best, share + sum(c for _, c in choice))
    return best


def two_flows(seed: int) -> tuple[Flow, Flow]:
    rng = random.Random(seed)
    p, q = sorted(rng.sample(range(L), 2))
    return tuple(Flow(fid, "tiny", x, round(rng.uniform(1, 60), 1),
                      round(rules.needed_budget_ms(COARSE, "tiny", x) * rng.uniform(1.2, 3), 2))
                 for fid, x in (("a", p), ("b", q)))


def test_matches_brute_force_on_two_flows():
    sliced = 0
    for seed in range(12):
        a, b = two_flows(seed)
        w = Workload((a, b))
        plan = OptimalPlanner().plan(w, COARSE)
        assert plan.info["status"] == "Optimal"
        assert verify(w, plan, COARSE) == []
        assert plan.total_share == pytest.approx(brute_force(COARSE, a, b), abs=1e-9), seed
        sliced += any(s.slice is not None for s in plan.stages)
    assert sliced >= 3  # the slices matter on several of them: the test bites


def test_rate_slack_pairs_are_every_subset():
    rates = np.array([3.0, 5.0, 3.0, 7.5])
    slack = np.array([4.0, 9.0, 6.0, 1.0])
    sums, least = _rate_slack_pairs(rates, slack)
    expect: dict[float, float] = {}
    for k in range(1, 5):
        for sub in itertools.combinations(range(4), k):
            r = round(float(rates[list(sub)].sum()), 9)
            expect[r] = max(expect.get(r, -math.inf), float(slack[list(sub)].min()))
    assert dict(zip(np.round(sums, 9), least)) == expect


def test_graft_slices_are_a_feasible_start():
    toy = ToyCost(overhead_ms=0.3)
    w = Workload(tuple(Flow(f"f{i}", "tiny", i % 6, 3.0 + i, 8.0 + 0.5 * i) for i in range(8)))
    graft = GraftPlanner().plan(w, toy)
    assert any(s.slice is not None for s in graft.stages)
    plan = OptimalPlanner(time_limit_s=1e-3).plan(w, toy)  # no time to improve on the start
    assert verify(w, plan, toy) == []
    assert plan.total_share <= graft.total_share + 1e-9
    assert plan.info["slice_instances"] >= sum(1 for _ in {s.slice for s in graft.stages
                                                            if s.slice})
