"""The nexus baseline: saturated sessions, residual sessions, squishy bin packing."""

import math

import pytest

from graft.errors import GraftInputError
from graft.models.catalog import get_model
from graft.plan.plan import TEMPORAL
from graft.plan.rules import needed_budget_ms
from graft.plan.verify import verify
from graft.planner.nexus import NexusPlanner
from graft.workload.flows import Flow, Workload
from graft.workload.synthetic import HETEROGENEOUS, synthetic_workload

from toycost import ToyCost

L = get_model("tiny").num_blocks
#: 1 ms per block and sample at share 1.0: e(p, B) = (L - p) * B ms, no batching gain
LINEAR = ToyCost(work_ms={"tiny": [1.0] * L}, overhead_ms=0.0, knee=1.0)


def plan_of(flows: list[Flow], cost=LINEAR):
    w = Workload(tuple(flows))
    plan = NexusPlanner().plan(w, cost)
    assert verify(w, plan, cost) == []
    assert plan.gpu_sharing == TEMPORAL
    return plan


def test_rate_of_exactly_two_gpus():
    # budget 24 ms allows 2e <= 24, so B <= 2 (e = 12 ms): a GPU serves 2 / 12 ms = 166.7
    # req/s at any batch; twice that needs two saturated GPUs.
    plan = plan_of([Flow("a", "tiny", 0, 2000.0 / 6, 24.0)])
    (st,) = plan.stages
    assert (st.replicas, st.batch, st.gpus) == (2, 2, (0, 1))
    assert math.isclose(st.exec_ms, 12.0) and math.isclose(st.duty_cycle_ms, 12.0)
    assert math.isclose(st.share, 1.0)
    assert plan.gpus == 2 and math.isclose(plan.total_share, 2.0)
    assert math.isclose(plan.routes[0].latency_ms, 24.0)


def test_two_light_fragments_squished_onto_one_gpu():
    # p=0: e = 6B; d = min(20B, 100 - 6B) -> occupancy 0.3 at B <= 3, so B = 3, d = 60.
    # p=3: e = 3B; d = min(20B, 100 - 3B) -> occupancy 0.15 at B <= 4, so B = 4, d = 80.
    # Merged at d = 60: both need batch 3 (50 req/s * 60 ms), e = 18 + 9 = 27 <= 60.
    plan = plan_of([Flow("a", "tiny", 0, 50.0, 100.0), Flow("b", "tiny", 3, 50.0, 100.0)])
    assert plan.gpus == 1
    by_start = {st.start: st for st in plan.stages}
    assert {st.duty_cycle_ms for st in plan.stages} == {60.0}
    assert (by_start[0].batch, by_start[3].batch) == (3, 3)
    assert math.isclose(by_start[0].share, 0.3) and math.isclose(by_start[3].share, 0.15)
    assert math.isclose(plan.total_share, 0.45)
    lat = {r.flow: r.latency_ms for r in plan.routes}
    assert math.isclose(lat["a"], 78.0) and math.isclose(lat["b"], 69.0)


def test_sessions_that_do_not_fit_one_cycle_get_their_own_gpus():
    # each alone runs at occupancy 0.6 (e = 6 ms every 10 ms); together they overflow a cycle
    plan = plan_of([Flow("a", "tiny", 0, 50.0, 16.0), Flow("b", "tiny", 0, 50.0, 16.0),
                    Flow("c", "tiny", 1, 120.0, 14.0)])
    assert plan.gpus == 2
    assert len(plan.stages) == 2  # one session per fragment, flows a and b share one
    for st in plan.stages:
        assert st.replicas == 1 and st.share > 0.5


def test_a_session_takes_the_tightest_budget_of_its_flows():
    plan = plan_of([Flow("loose", "tiny", 2, 10.0, 500.0), Flow("tight", "tiny", 2, 10.0, 30.0)])
    (st,) = plan.stages
    assert st.duty_cycle_ms + st.exec_ms <= 30.0 + 1e-9
    assert {r.flow for r in plan.routes} == {"loose", "tight"}


def test_random_workloads_verify():
    cost = ToyCost(batch_exponent=0.7)
    for seed in range(6):
        w = synthetic_workload(cost, 12, HETEROGENEOUS, models=("tiny", "resnet50"), seed=seed)
        plan = NexusPlanner().plan(w, cost)
        assert verify(w, plan, cost) == []
        assert plan.gpus >= math.ceil(plan.total_share - 1e-9)
        for gpu in range(plan.gpus):
            on = [st for st in plan.stages if gpu in st.gpus]
            assert len({st.duty_cycle_ms for st in on}) == 1
            assert sum(st.share for st in on) <= 1 + 1e-9


def test_unservable_flow_named_or_listed():
    need = needed_budget_ms(LINEAR, "tiny", 0)
    flows = [Flow("ok", "tiny", 3, 10.0, 50.0), Flow("late", "tiny", 0, 10.0, need / 2)]
    w = Workload(tuple(flows))
    with pytest.raises(GraftInputError, match="flow 'late'"):
        NexusPlanner().plan(w, LINEAR)
    plan = NexusPlanner().plan(w, LINEAR, allow_partial=True)
    assert [u.flow for u in plan.unserved] == ["late"]
    assert verify(w, plan, LINEAR, allow_partial=True) == []
