"""The optimal MILP planner: exact on its grid, never worse than the heuristics."""

import json
import math
import random

import numpy as np
import pytest

import graft.planner.optimal as optimal_mod
from graft.cli import main
from graft.errors import GraftInputError
from graft.models.catalog import get_model
from graft.plan.rules import needed_budget_ms
from graft.plan.verify import verify
from graft.planner.configs import segment_options
from graft.planner.graft_planner import GraftPlanner
from graft.planner.gslice import GslicePlanner
from graft.planner.optimal import OptimalPlanner
from graft.workload.flows import Flow, Workload

from toycost import ToyCost

L = get_model("tiny").num_blocks
GAP = 1e-4  # the planner's mip_rel_gap


def random_workload(cost, seed: int, n_flows: int) -> Workload:
    rng = random.Random(seed)
    points = rng.sample(range(L), rng.randint(1, 4))
    flows = []
    for i in range(n_flows):
        p = rng.choice(points)
        flows.append(Flow(f"f{i}", "tiny", p, round(rng.uniform(5, 600), 2),
                          round(needed_budget_ms(cost, "tiny", p) * rng.uniform(1.2, 5), 3)))
    return Workload(tuple(flows))


def test_single_flow_is_the_cheapest_configuration(toy):
    w = Workload((Flow("x", "tiny", 2, 180.0, 9.0),))
    plan = OptimalPlanner().plan(w, toy)
    assert verify(w, plan, toy) == []
    best = segment_options(toy, "tiny", 2, L).cheapest(180.0, 9.0)
    assert math.isclose(plan.total_share, best.cost, rel_tol=1e-9)
    assert math.isclose(plan.total_share, GslicePlanner().plan(w, toy).total_share)
    info = plan.info
    assert info["solver"] == "highs" and info["status"] == "Optimal"
    assert info["mip_gap"] <= GAP and info["solve_s"] >= 0
    assert math.isclose(info["objective"], plan.total_share, rel_tol=1e-6)
    json.dumps(plan.to_json(), allow_nan=False)


@pytest.mark.parametrize("exponent", [1.0, 0.7])
def test_never_worse_than_graft_or_gslice(exponent):
    cost = ToyCost(batch_exponent=exponent)
    graft = GraftPlanner(time_share=False)  # the MILP knows the 2e rule, not time-sharing
    for seed in range(5):
        w = random_workload(cost, seed, 2 + seed % 4)
        plan = OptimalPlanner().plan(w, cost)
        assert verify(w, plan, cost) == []
        assert plan.info["status"] == "Optimal", plan.info
        assert plan.info["solve_s"] < 10
        for other in (graft, GslicePlanner()):
            theirs = other.plan(w, cost).total_share
            assert plan.total_share <= theirs * (1 + GAP) + 1e-9, (seed, other.name)
        assert plan.total_share >= plan.lower_bound_share * (1 - 1e-9)


def test_pruning_keeps_the_optimum(monkeypatch):
    # a coarse grid keeps the unpruned MILP small; the pruned one must find the same optimum
    cost = ToyCost(batch_exponent=0.8, shares=tuple(round(0.1 * i, 1) for i in range(1, 11)),
                   batches=(1, 2, 4, 8, 16, 32))
    for seed in range(4):
        w = random_workload(cost, 100 + seed, 3)
        pruned = OptimalPlanner().plan(w, cost)
        with monkeypatch.context() as m:
            m.setattr(optimal_mod, "_useful_for_some_rate",
                      lambda e, *args, **kw: np.ones(len(e), dtype=bool))
            full = OptimalPlanner().plan(w, cost)
        assert full.info["options"] > pruned.info["options"]
        assert math.isclose(pruned.total_share, full.total_share, abs_tol=1e-9), seed


def test_identical_flows_are_one_fragment(toy):
    w = Workload((Flow("a", "tiny", 1, 40.0, 12.0), Flow("b", "tiny", 1, 60.0, 12.0),
                  Flow("c", "tiny", 3, 60.0, 8.0)))
    plan = OptimalPlanner().plan(w, toy)
    assert plan.info["fragments"] == 2
    assert verify(w, plan, toy) == []
    routes = {r.flow: r.stages for r in plan.routes}
    assert routes["a"] == routes["b"]


def test_time_limit_returns_the_start_with_its_gap(toy):
    w = random_workload(toy, 7, 6)
    plan = OptimalPlanner(time_limit_s=1e-3).plan(w, toy)
    assert verify(w, plan, toy) == []
    assert plan.info["status"] == "Time limit reached"
    assert plan.total_share <= GslicePlanner().plan(w, toy).total_share + 1e-9
    json.dumps(plan.to_json(), allow_nan=False)  # an unknown gap is null, not NaN


def test_time_shared_variant_verifies(toy):
    w = random_workload(toy, 3, 4)
    plain = OptimalPlanner().plan(w, toy)
    shared = OptimalPlanner(time_share=True).plan(w, toy)
    assert verify(w, shared, toy) == []
    assert shared.total_share <= plain.total_share + 1e-9


def test_unservable_flow_named_or_listed(toy):
    need = needed_budget_ms(toy, "tiny", 0)
    w = Workload((Flow("ok", "tiny", 3, 10.0, 50.0), Flow("late", "tiny", 0, 10.0, need / 2)))
    with pytest.raises(GraftInputError, match="flow 'late'"):
        OptimalPlanner().plan(w, toy)
    plan = OptimalPlanner().plan(w, toy, allow_partial=True)
    assert [u.flow for u in plan.unserved] == ["late"]
    assert verify(w, plan, toy, allow_partial=True) == []


def big_workload(n: int) -> dict:
    return {"flows": [{"id": f"f{i}", "model": "resnet50", "partition": i % 6,
                       "rate": 10.0, "budget_ms": 500.0 + i} for i in range(n)]}


def test_refuses_large_workloads(toy):
    flows = tuple(Flow(**f) for f in big_workload(13)["flows"])
    with pytest.raises(GraftInputError,
                       match="optimal solves at most 12 fragments .*this workload has 13"):
        OptimalPlanner().plan(Workload(flows), toy)


def test_cli_refusal_is_one_line(tmp_path, capsys):
    path = tmp_path / "w.json"
    path.write_text(json.dumps(big_workload(20)))
    assert main(["plan", str(path), "--planner", "optimal"]) == 2
    err = capsys.readouterr().err.strip()
    assert "optimal solves at most 12 fragments" in err and "has 20" in err
    assert "\n" not in err
