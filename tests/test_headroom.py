"""Headroom: stages run below a utilisation cap, plans still verify, and bursts miss less."""

import pytest

from graft.errors import GraftInputError
from graft.plan.verify import verify
from graft.planner.headroom import plan_with_headroom
from graft.planner.registry import make_planner
from graft.sim.server import simulate_plan
from graft.workload.flows import Flow, Workload

from toycost import ToyCost

TOY = ToyCost(overhead_ms=0.3, batch_exponent=0.8)
W = Workload((Flow("a", "tiny", 0, 900.0, 40.0), Flow("b", "tiny", 2, 1500.0, 30.0),
              Flow("c", "tiny", 4, 600.0, 20.0)))


def utilization(stage) -> float:
    period = stage.duty_cycle_ms or stage.exec_ms
    return stage.rate * period / (1000.0 * stage.batch * stage.replicas)


@pytest.mark.parametrize("name", ["graft", "gslice", "nexus"])
def test_stages_stay_under_the_cap_and_verify(name):
    plan = plan_with_headroom(make_planner(name), W, TOY, max_utilization=0.7)
    assert verify(W, plan, TOY) == []
    assert all(utilization(s) <= 0.7 + 1e-9 for s in plan.stages)
    assert plan.info["max_utilization"] == 0.7
    bare = make_planner(name).plan(W, TOY)
    assert plan.total_share >= bare.total_share - 1e-9


def test_headroom_cuts_misses_under_poisson_arrivals():
    def attainment(u: float) -> float:
        plan = plan_with_headroom(make_planner("graft"), W, TOY, max_utilization=u)
        return simulate_plan(plan, W, TOY, duration_s=5, seed=3).metrics["slo_attainment"]

    assert attainment(0.6) > attainment(1.0)


def test_bad_cap():
    for u in (0.0, 1.5, float("nan")):
        with pytest.raises(GraftInputError, match="max utilization"):
            plan_with_headroom(make_planner("graft"), W, TOY, max_utilization=u)
