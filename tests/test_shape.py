"""Replica shaping: busy stages take shares that pack onto fewer GPUs."""

from graft.plan.verify import verify
from graft.planner.assemble import StageDraft, assemble_plan
from graft.planner.configs import segment_options
from graft.planner.graft_planner import GraftPlanner
from graft.planner.gslice import GslicePlanner
from graft.planner.shape import gpus_for, shape_replicas
from graft.workload.flows import Flow, Workload

from toycost import ToyCost


def test_gpus_for():
    assert gpus_for(0.77, 10) == 10  # one replica per GPU
    assert gpus_for(0.5, 10) == 5
    assert gpus_for(0.3, 10) == 4  # three per GPU
    assert gpus_for(0.01, 300, 30) == 10  # memory or processes, not share, bound it


def test_many_tiny_replicas_are_shaped_to_fit_memory():
    # a huge rate through a cheap segment: the cheapest share is 1% per replica, but every
    # replica holds a CUDA context, so memory, not share, decides the GPU count
    from graft.cost.registry import make_cost_model

    cost = make_cost_model("analytic:v100")
    flow = Flow("big", "mobilenet_v2", 19, 1e8, 50.0)
    w = Workload((flow,))
    config = segment_options(cost, "mobilenet_v2", 19, 20).cheapest(flow.rate, flow.budget_ms)
    drafts = [StageDraft("mobilenet_v2", 19, 20, config, [flow])]
    plain = assemble_plan("test", cost, drafts, [flow], ())
    shaped = assemble_plan("test", cost, shape_replicas(drafts, cost), [flow], ())
    assert verify(w, shaped, cost) == []
    assert shaped.gpus * 1.5 < plain.gpus
    assert shaped.total_share <= plain.total_share * 1.02 + 1e-9
    # graft keeps a shaped plan only where it needs no more share than gslice's: with one
    # flow there is no room, so graft's plan is gslice's
    assert GraftPlanner().plan(w, cost).total_share <= (
        GslicePlanner().plan(w, cost).total_share * (1 + 1e-9))


def test_shaping_never_uses_more_gpus():
    cost = ToyCost(overhead_ms=0.5, batch_exponent=0.8)
    for rate, budget in [(20000.0, 14.0), (50000.0, 9.0), (30000.0, 20.0), (5000.0, 8.0)]:
        w = Workload((Flow("a", "tiny", 0, rate, budget), Flow("b", "tiny", 3, rate, budget)))
        plain = GraftPlanner(shape_replicas=False).plan(w, cost)
        shaped = GraftPlanner().plan(w, cost)
        assert verify(w, shaped, cost) == []
        assert shaped.gpus <= plain.gpus
        # the trade is bounded: at most 2% more share, and never more than gslice's
        assert shaped.total_share <= plain.total_share * 1.02 + 1e-9
        assert shaped.total_share <= GslicePlanner().plan(w, cost).total_share * (1 + 1e-9)
