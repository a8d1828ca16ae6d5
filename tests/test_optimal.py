"""The optimal MILP planner: exact on its grid (time-shared slices included), never worse
than the heuristics."""

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
from graft.planner.optimal import GAP_MODELS, OptimalPlanner, gap_workloads
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
def test_never_worse_than_graft_gslice_or_the_2e_optimum(exponent):
    cost = ToyCost(batch_exponent=exponent)
    for seed in range(5):
        w = random_workload(cost, seed, 2 + seed % 4)
        plan = OptimalPlanner().plan(w, cost)
        assert verify(w, plan, cost) == []
        assert plan.info["status"] == "Optimal", plan.info
        assert plan.info["solve_s"] < 10
        # the MILP's objective is the plan's total share
        assert plan.total_share == pytest.approx(plan.info["objective"], abs=1e-9)
        two_e = OptimalPlanner(slices=False).plan(w, cost)
        assert two_e.info["status"] == "Optimal"
        for other in (GraftPlanner(), GraftPlanner(time_share=False), GslicePlanner()):
            theirs = other.plan(w, cost).total_share
            assert plan.total_share <= theirs * (1 + GAP) + 1e-9, (seed, other)
        assert plan.total_share <= two_e.total_share + 1e-9
        assert plan.total_share >= plan.lower_bound_share * (1 - 1e-9)


def test_low_rate_tight_flows_verify_and_match_their_objective():
    cost = ToyCost(overhead_ms=0.3)
    sliced = 0
    for seed in range(4):
        rng = random.Random(50 + seed)
        points = rng.sample(range(L), 3)
        w = Workload(tuple(
            Flow(f"f{i}", "tiny", p, round(rng.uniform(1, 20), 2),
                 round(needed_budget_ms(cost, "tiny", p) * rng.uniform(1.5, 4), 3))
            for i, p in enumerate(points + [rng.choice(points)])))
        plan = OptimalPlanner().plan(w, cost)
        assert verify(w, plan, cost) == []
        assert plan.info["status"] == "Optimal"
        assert plan.total_share == pytest.approx(plan.info["objective"], abs=1e-9)
        assert plan.total_share <= GraftPlanner().plan(w, cost).total_share + 1e-9
        assert plan.total_share <= (OptimalPlanner(slices=False).plan(w, cost).total_share
                                    + 1e-9)
        sliced += plan.info["slices_used"] > 0
    assert sliced  # slices pay on some of them


def test_a_time_shared_slice_beats_every_2e_plan():
    # two low-rate flows with tight budgets on different partitions: alone, each needs a
    # fast stage it barely uses; taking turns on one slice needs less share in all
    toy = ToyCost(overhead_ms=0.3)
    w = Workload((Flow("a", "tiny", 0, 5.0, 12.0), Flow("b", "tiny", 2, 5.0, 12.0)))
    two_e = OptimalPlanner(slices=False).plan(w, toy)
    plan = OptimalPlanner().plan(w, toy)
    assert two_e.info["status"] == plan.info["status"] == "Optimal"
    assert two_e.info["problem"] == "2e stages"
    assert plan.info["problem"] == "2e stages + time-shared slices"
    assert verify(w, plan, toy) == []
    assert plan.total_share < two_e.total_share - 0.01 + 1e-9
    members = [s for s in plan.stages if s.slice is not None]
    assert len(members) == 2 and len({s.slice for s in members}) == 1
    duty = sum(s.exec_ms for s in members)
    share = members[0].slice_share
    assert plan.total_share == pytest.approx(share)
    for s in members:
        assert s.duty_cycle_ms == pytest.approx(duty)
        assert s.batch * 1000 / duty >= s.rate
        assert duty + s.exec_ms <= 12.0 + 1e-9  # no hand-off after the last block
        assert s.exec_ms == pytest.approx(toy.latency_ms("tiny", s.start, s.end, s.batch, share))
    assert plan.info["objective"] == pytest.approx(plan.total_share)


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


def test_slices_off_is_the_2e_problem(toy):
    w = random_workload(toy, 3, 4)
    plain = OptimalPlanner(slices=False).plan(w, toy)
    assert verify(w, plain, toy) == []
    assert all(s.slice is None for s in plain.stages)
    assert plain.info["slice_instances"] == 0 and "first_phase" not in plain.info
    shared = OptimalPlanner().plan(w, toy)
    assert shared.total_share <= plain.total_share + 1e-9
    for key in ("status", "mip_gap", "objective", "dual_bound", "problem"):
        assert key in shared.info


def test_gap_workloads_are_seeded_small_and_servable():
    from graft.cost.registry import make_cost_model

    v100 = make_cost_model("analytic:v100")
    suite = gap_workloads(v100, count=30, seed=0)
    assert len(suite) == 30 and len({name for name, _ in suite}) == 30
    assert [w for _, w in suite] == [w for _, w in gap_workloads(v100, count=30, seed=0)]
    assert [w for _, w in suite] != [w for _, w in gap_workloads(v100, count=30, seed=1)]
    sizes, points = set(), set()
    for _, w in suite:
        assert len(w.models()) == 1 and w.models()[0] in GAP_MODELS
        assert 3 <= len(w.flows) <= 12
        sizes.add(len(w.flows))
        points.add(len({f.partition for f in w.flows}))
        for f in w.flows:
            assert 1 <= f.rate <= 300
            assert f.budget_ms >= needed_budget_ms(v100, f.model, f.partition)
    assert {m for _, w in suite for m in w.models()} == set(GAP_MODELS)
    assert len(sizes) >= 6 and min(points) == 1 and max(points) >= 5


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
