import itertools
import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from graft.plan.rules import planned_handoff_ms
from graft.planner.configs import SegmentOptions, replicas_needed

from toycost import ToyCost


def test_replicas_needed():
    assert replicas_needed(100.0, 4, 40.0) == 1  # 4 per 40 ms = 100 req/s exactly
    assert replicas_needed(101.0, 4, 40.0) == 2
    assert replicas_needed(0.5, 1, 1.0) == 1


@settings(max_examples=40, deadline=None)
@given(rate=st.floats(0.1, 5000), cap=st.floats(0.1, 200),
       seg=st.sampled_from([(0, 1), (0, 6), (2, 5), (5, 6)]))
def test_cheapest_matches_brute_force(rate, cap, seg):
    toy = ToyCost()
    opts = SegmentOptions(toy, "tiny", *seg)
    best = opts.cheapest(rate, cap)
    brute = math.inf
    for b, g in itertools.product(toy.batches, toy.shares):
        e = toy.latency_ms("tiny", *seg, b, g)
        # the 2e rule plus the hand-off of the batch to the next stage (none after block 6)
        if 2 * e + planned_handoff_ms(toy, "tiny", seg[1], b) <= cap * (1 + 1e-9):
            brute = min(brute, g * replicas_needed(rate, b, e))
    if best is None:
        assert brute == math.inf
    else:
        assert math.isclose(best.cost, brute, rel_tol=1e-9)
        assert best.time_ms <= cap * (1 + 1e-9)
        assert best.replicas * best.batch * 1000 / best.exec_ms >= rate * (1 - 1e-9)


def test_costs_are_monotone_in_cap(toy):
    opts = SegmentOptions(toy, "tiny", 0, 6)
    caps = np.linspace(0.01, 100, 200)
    costs, _ = opts.costs_at(50.0, caps)
    finite = costs[np.isfinite(costs)]
    assert len(finite) > 0 and np.all(np.diff(finite) <= 1e-12)
    assert opts.fastest_time_ms == 2 * min(toy.latency_ms("tiny", 0, 6, b, g)
                                  for b in toy.batches for g in toy.shares)
