"""The staircase dynamic program against brute force, and its structure on clear cases."""

import itertools
import math

import numpy as np
import pytest

from graft.models.catalog import get_model
from graft.planner.configs import segment_options
from graft.planner.merge import Fragment, collapse_by_partition, fragment_of, merge_flows
from graft.planner.realign import realign
from graft.workload.flows import Flow

from toycost import ToyCost

L = get_model("tiny").num_blocks


def frag(p: int, rate: float, budget: float, name: str | None = None) -> Fragment:
    return fragment_of([Flow(name or f"p{p}", "tiny", p, rate, budget)])


def brute_force(frags: list[Fragment], cost, steps: int) -> float:
    """Every kept set and every split of the discretised trunk budget, costed directly."""
    frags = sorted(frags, key=lambda f: f.partition)
    k = len(frags)
    step = max(f.budget_ms for f in frags) / steps
    bidx = [min(steps, math.floor(f.budget_ms / step * (1 + 1e-12))) for f in frags]
    rates = np.cumsum([f.rate for f in frags])

    def stage(p0, p1, rate, cap):
        if cap < 0:
            return math.inf
        c = segment_options(cost, "tiny", p0, p1).cheapest(rate, cap)
        return math.inf if c is None else c.cost

    best = math.inf
    for r in range(k + 1):
        for kept in itertools.combinations(range(k), r):
            ends = [frags[j].partition for j in kept[1:]] + [L]
            for split in itertools.product(range(steps + 1), repeat=len(kept)):
                T = [sum(split[m:]) for m in range(len(kept))]
                if any(T[m] > bidx[j] for m, j in enumerate(kept)):
                    continue
                total = sum(stage(frags[j].partition, ends[m], rates[j], split[m] * step)
                            for m, j in enumerate(kept))
                for i in range(k):
                    if i in kept:
                        continue
                    nxt = next((m for m, j in enumerate(kept) if j > i), None)
                    end, t = (L, 0) if nxt is None else (frags[kept[nxt]].partition, T[nxt])
                    total += stage(frags[i].partition, end, frags[i].rate,
                                   frags[i].budget_ms - t * step)
                best = min(best, total)
    return best


@pytest.mark.parametrize("frags", [
    [frag(0, 30, 25), frag(3, 80, 20)],
    [frag(0, 5, 12), frag(2, 200, 30), frag(4, 40, 9)],
    [frag(1, 300, 40), frag(2, 10, 6), frag(5, 50, 15)],
    [frag(0, 1000, 30), frag(3, 1000, 30), frag(4, 10, 3)],
])
def test_dynamic_program_equals_brute_force(toy, frags):
    steps = 8
    got = realign(frags, toy, steps=steps)
    assert math.isclose(got.cost, brute_force(frags, toy, steps), rel_tol=1e-9)
    assert math.isclose(got.cost, sum(d.config.cost for d in got.drafts), rel_tol=1e-9)


def test_shared_tail_carries_both_fragments():
    # light heads, one heavy last block that batches well: sharing the tail pays
    toy = ToyCost(work_ms={"tiny": [0.01] * 5 + [3.0]}, overhead_ms=0.1, batch_exponent=0.3)
    a, b = frag(0, 400, 60), frag(3, 400, 60)
    got = realign([a, b], toy)
    tail = [d for d in got.drafts if d.end == L and d.start == 3]
    assert len(tail) == 1 and {f.id for f in tail[0].flows} == {"p0", "p3"}
    assert math.isclose(tail[0].rate, 800)
    private = sum(segment_options(toy, "tiny", f.partition, L).cheapest(f.rate, f.budget_ms).cost
                  for f in (a, b))
    assert got.cost < private


def test_every_route_fits_its_budget(toy):
    frags = [frag(0, 20, 14), frag(1, 100, 30), frag(3, 60, 10), frag(5, 5, 4)]
    got = realign(frags, toy)
    for f in frags:
        path = sorted((d for d in got.drafts if any(x.id == f.flows[0].id for x in d.flows)),
                      key=lambda d: d.start)
        assert path[0].start == f.partition and path[-1].end == L
        assert all(x.end == y.start for x, y in zip(path, path[1:]))
        assert sum(2 * d.config.exec_ms for d in path) <= f.budget_ms * (1 + 1e-9)


def test_merge_and_collapse():
    flows = [Flow("a", "tiny", 1, 1, 10.0), Flow("b", "tiny", 1, 2, 10.4),
             Flow("c", "tiny", 1, 3, 20.0), Flow("d", "tiny", 2, 4, 5.0)]
    frags = merge_flows(flows, tolerance=0.05)
    assert [(f.partition, f.rate, f.budget_ms) for f in frags] == [
        (1, 3, 10.0), (1, 3, 20.0), (2, 4, 5.0)]
    col = collapse_by_partition(frags)
    assert [(f.partition, f.rate, f.budget_ms) for f in col] == [(1, 6, 10.0), (2, 4, 5.0)]
    assert sorted(x.id for x in col[0].flows) == ["a", "b", "c"]
