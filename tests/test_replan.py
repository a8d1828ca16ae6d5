"""When a candidate plan replaces the serving one: overload counts only the traffic the
serving plan would admit; a cheaper candidate needs to beat the hysteresis."""

import pytest

from graft.client.traffic import ClientRequest
from graft.cost.registry import make_cost_model
from graft.plan.rules import needed_budget_ms
from graft.planner.registry import make_planner
from graft.serving.replan import Candidate, Window, observe, overloaded, switch_reason
from graft.workload.flows import Flow, Workload

V100 = make_cost_model("analytic:v100")
WINDOW_S = 2.0


def serving(rate: float = 20.0, model: str = "tiny") -> Candidate:
    need = needed_budget_ms(V100, model, 2)
    w = Workload((Flow(f"{model}/p2/b1", model, 2, rate, need * 2.0),))
    return Candidate(make_planner("graft").plan(w, V100), Window((), WINDOW_S, w))


def window(rate: float, budget_ms: float, partition: int = 2) -> Candidate:
    """A candidate whose window holds ``rate`` req/s of tiny requests with ``budget_ms``
    (its plan does not matter to ``overloaded``)."""
    n = round(rate * WINDOW_S)
    reqs = tuple(ClientRequest(client="c", model="tiny", partition=partition,
                               send_ms=k - 5.0, arrival_ms=float(k), budget_ms=budget_ms,
                               head_ms=1.0, upload_ms=1.0, estimate_mbps=8.0)
                 for k in range(n))
    return Candidate(None, Window(reqs, WINDOW_S, Workload(())))


def test_overload_counts_admitted_traffic_only():
    cur = serving()
    stage = cur.plan.stages[0]
    floor = cur.plan.least_latency_ms(V100)["tiny/p2/b1"]
    heavy = stage.rate * 10
    # ten times the planned rate with a budget the route can meet: overloaded
    assert overloaded(cur, window(heavy, floor * 1.01), 1.0, V100)
    # the same rate with a budget below the route's least latency: admission control
    # rejects those requests, so they load nothing
    assert not overloaded(cur, window(heavy, floor * 0.99), 1.0, V100)
    # traffic of a fragment the plan does not route loads nothing either
    assert not overloaded(cur, window(heavy, floor * 10, partition=3), 1.0, V100)
    assert not overloaded(cur, Candidate(None, Window((), 0.0, Workload(()))), 1.0, V100)


def test_switch_reasons():
    cur = serving(rate=2000.0, model="resnet50")
    nothing = Candidate(None, Window((), WINDOW_S, Workload(())))
    assert switch_reason(cur, nothing, hysteresis=0.05, max_utilization=1.0, cost=V100) is None
    w = Workload((Flow("y", "resnet50", 4, 1.0, 50.0),))
    other = Candidate(make_planner("graft").plan(w, V100), Window((), WINDOW_S, w))
    assert switch_reason(cur, other, hysteresis=0.05, max_utilization=1.0, cost=V100) == "unrouted"
    cheaper = serving(rate=20.0, model="resnet50")
    assert cheaper.plan.total_share < 0.5 * cur.plan.total_share
    assert switch_reason(cur, cheaper, hysteresis=0.05, max_utilization=1.0, cost=V100) == "cheaper"
    assert switch_reason(cur, cheaper, hysteresis=1.0, max_utilization=1.0, cost=V100) is None


@pytest.mark.parametrize("util", [0.5, 1.0])
def test_overload_threshold_is_planned_rate_over_max_utilization(util):
    cur = serving(rate=100.0)
    stage = cur.plan.stages[0]
    budget = cur.plan.least_latency_ms(V100)["tiny/p2/b1"] * 2
    # requests are counted over the window: rates on a 1 / WINDOW_S grid
    step = 1.0 / WINDOW_S
    just_below = (stage.rate / util) // step * step
    assert not overloaded(cur, window(just_below, budget), util, V100)
    assert overloaded(cur, window(just_below + step, budget), util, V100)


def test_observe_keeps_the_window_and_its_flows():
    reqs = window(10.0, 50.0).window.requests  # arrivals at 0, 1, ..., 19 ms
    w = observe(reqs, V100, window_ms=(5.0, 15.0))
    assert [r.arrival_ms for r in w.requests] == [float(k) for k in range(5, 15)]
    assert w.seconds == 0.01
    assert [f.rate for f in w.workload.flows] == [pytest.approx(1000.0)]  # 10 in 10 ms
