"""When a candidate plan replaces the serving one: overload counts only traffic the serving
plan would admit; a cheaper candidate needs to beat the hysteresis."""

import pytest

from graft.cost.registry import make_cost_model
from graft.planner.registry import make_planner
from graft.planner.servable import needed_budget_ms
from graft.sim.replan import Candidate, overloaded, switch_reason
from graft.workload.flows import Flow, Workload

V100 = make_cost_model("analytic:v100")


def serving(rate: float = 20.0, model: str = "tiny") -> Candidate:
    need = needed_budget_ms(V100, model, 2)
    w = Workload((Flow(f"{model}/p2/b1", model, 2, rate, need * 2.0),))
    return Candidate(make_planner("graft").plan(w, V100), w, 0)


def test_overload_counts_admitted_traffic_only():
    cur = serving()
    stage = cur.plan.stages[0]
    floor = cur.plan.least_latency_ms()["tiny/p2/b1"]
    heavy = stage.rate * 10
    # ten times the planned rate with a budget the route can meet: overloaded
    assert overloaded(cur, Workload((Flow("x", "tiny", 2, heavy, floor * 1.01),)), 1.0)
    # the same rate with a budget below the route's least latency: admission control
    # rejects those requests, so they load nothing
    assert not overloaded(cur, Workload((Flow("x", "tiny", 2, heavy, floor * 0.99),)), 1.0)
    # traffic of a fragment the plan does not route loads nothing either
    assert not overloaded(cur, Workload((Flow("x", "tiny", 3, heavy, floor * 10),)), 1.0)


def test_switch_reasons():
    cur = serving(rate=2000.0, model="resnet50")
    assert switch_reason(cur, Candidate(None, Workload(()), 0), hysteresis=0.05,
                         max_utilization=1.0) is None
    w = Workload((Flow("y", "resnet50", 4, 1.0, 50.0),))
    other = Candidate(make_planner("graft").plan(w, V100), w, 0)
    assert switch_reason(cur, other, hysteresis=0.05, max_utilization=1.0) == "unrouted"
    cheaper = serving(rate=20.0, model="resnet50")
    assert cheaper.plan.total_share < 0.5 * cur.plan.total_share
    assert switch_reason(cur, cheaper, hysteresis=0.05, max_utilization=1.0) == "cheaper"
    assert switch_reason(cur, cheaper, hysteresis=1.0, max_utilization=1.0) is None


@pytest.mark.parametrize("util", [0.5, 1.0])
def test_overload_threshold_is_planned_rate_over_max_utilization(util):
    cur = serving()
    stage = cur.plan.stages[0]
    budget = cur.plan.least_latency_ms()["tiny/p2/b1"] * 2
    just_below = stage.rate / util * 0.999
    just_above = stage.rate / util * 1.001
    assert not overloaded(cur, Workload((Flow("x", "tiny", 2, just_below, budget),)), util)
    assert overloaded(cur, Workload((Flow("x", "tiny", 2, just_above, budget),)), util)
