"""graft never needs more share than gslice (per-fragment budget groups, the strongest
GSLICE-style plan without re-alignment), on any workload: single and mixed models, low and
high rates, narrow and wide budget spreads."""

import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graft.cost.registry import make_cost_model
from graft.models.catalog import get_model
from graft.plan.rules import needed_budget_ms
from graft.plan.verify import verify
from graft.planner.registry import make_planner
from graft.workload.flows import Flow, Workload

from toycost import ToyCost

TOY = ToyCost(batch_exponent=0.7)
V100 = make_cost_model("analytic:v100")
MODELS = ("tiny", "resnet50", "mobilenet_v2", "vgg16")


@st.composite
def workloads(draw):
    cost = draw(st.sampled_from([TOY, V100]))
    models = draw(st.lists(st.sampled_from(MODELS), min_size=1, max_size=3, unique=True))
    high = draw(st.booleans())
    wide = draw(st.booleans())
    points = {m: draw(st.lists(st.integers(0, get_model(m).num_blocks - 1), min_size=1,
                               max_size=6, unique=True)) for m in models}
    flows = []
    for i in range(draw(st.integers(1, 40))):
        m = draw(st.sampled_from(models))
        p = draw(st.sampled_from(points[m]))
        rate = draw(st.floats(100.0, 5000.0) if high else st.floats(0.2, 30.0))
        slack = draw(st.floats(1.0, 30.0) if wide else st.floats(1.5, 2.0))
        flows.append(Flow(f"f{i}", m, p, rate, needed_budget_ms(cost, m, p) * slack))
    return cost, Workload(tuple(flows))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=workloads())
def test_graft_never_needs_more_share_than_gslice(case):
    cost, w = case
    graft = make_planner("graft").plan(w, cost)
    gslice = make_planner("gslice").plan(w, cost)
    assert verify(w, graft, cost) == []
    assert verify(w, gslice, cost) == []
    assert graft.total_share <= gslice.total_share * (1 + 1e-6)
    # the per-group baseline is never worse than one instance per fragment
    single = make_planner("gslice-single").plan(w, cost)
    assert gslice.total_share <= single.total_share * (1 + 1e-6)


def test_the_issues_high_rate_wide_spread_case():
    # 393 resnet50 flows over 7 partition points, budgets spread log-uniformly from what
    # the fragment needs to about 33 ms, about 45,000 req/s in all: here one instance per
    # fragment at its tightest budget wastes most of the share, and so did graft's four
    # budget classes before it searched per-fragment budget groups
    rng = random.Random(7)
    points = sorted(rng.sample(range(18), 7))
    flows = []
    for i in range(393):
        p = rng.choice(points)
        need = needed_budget_ms(V100, "resnet50", p)
        budget = max(need, 0.7 * (33 / 0.7) ** rng.random())
        flows.append(Flow(f"f{i}", "resnet50", p, rng.uniform(20, 210), budget))
    w = Workload(tuple(flows))
    assert 40_000 < sum(f.rate for f in flows) < 50_000
    graft, gslice, single = (make_planner(n).plan(w, V100)
                             for n in ("graft", "gslice", "gslice-single"))
    assert verify(w, graft, V100) == []
    assert gslice.total_share < 0.8 * single.total_share
    assert graft.total_share <= gslice.total_share * (1 + 1e-6)
