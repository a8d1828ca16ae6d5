"""The plan rules a runtime pays for: hand-offs between stages (from the placement), memory
and processes per GPU, and the cost model's measured fixed costs."""

from dataclasses import replace

import pytest

from graft.cost.base import DEVICE, INTERCONNECT, PROCESS
from graft.cost.registry import make_cost_model
from graft.errors import GraftInputError
from graft.models.catalog import get_model
from graft.plan import rules
from graft.plan.plan import Plan, Route, Stage
from graft.plan.verify import verify
from graft.planner.registry import make_planner
from graft.workload.flows import Flow, Workload
from graft.workload.synthetic import EXTREME, synthetic_workload

V100 = make_cost_model("analytic:v100")


def stage(sid: str, start: int, end: int, gpus=(0,), **kw) -> Stage:
    e = V100.latency_ms("resnet50", start, end, kw.get("batch", 4), kw.get("share", 0.5))
    base = dict(id=sid, model="resnet50", start=start, end=end, batch=4, share=0.5,
                replicas=len(gpus), exec_ms=e, rate=10.0, gpus=tuple(gpus))
    return Stage(**{**base, **kw})


def test_handoff_time_is_bytes_over_the_link_plus_a_fixed_cost():
    per_sample = get_model("resnet50").in_bytes(6)
    assert rules.handoff_ms(V100, "resnet50", 6, 8, PROCESS) == 0
    across = rules.handoff_ms(V100, "resnet50", 6, 8, INTERCONNECT)
    assert across == pytest.approx(V100.links.latency_ms + 8 * per_sample / 25e9 * 1e3)
    same_gpu = rules.handoff_ms(V100, "resnet50", 6, 8, DEVICE)
    assert V100.links.latency_ms < same_gpu < across
    # the planner charges the worst case, and nothing after the last block
    L = get_model("resnet50").num_blocks
    assert rules.planned_handoff_ms(V100, "resnet50", 6, 8) == across
    assert rules.planned_handoff_ms(V100, "resnet50", L, 8) == 0


def test_handoff_kind_is_the_worst_over_replica_pairs():
    a, b = stage("a", 0, 6, gpus=(0,)), stage("b", 6, 18, gpus=(0,))
    assert rules.handoff_kind(a, b) == DEVICE
    assert rules.handoff_kind(a, replace(b, gpus=(1,))) == INTERCONNECT
    assert rules.handoff_kind(a, replace(b, gpus=(0, 1), replicas=2)) == INTERCONNECT
    sliced = dict(slice="s0", slice_share=0.5, duty_cycle_ms=10.0)
    assert rules.handoff_kind(replace(a, **sliced), replace(b, **sliced)) == PROCESS


def test_routes_pay_their_handoffs_and_the_verifier_checks_them():
    w = synthetic_workload(V100, 40, EXTREME, models=("resnet50",), seed=3)
    plan = make_planner("graft").plan(w, V100)
    assert verify(w, plan, V100) == []
    by_id = plan.stage_by_id()
    multi = [r for r in plan.routes if len(r.stages) > 1]
    assert multi, "the test needs a re-aligned route"
    for r in multi:
        chain = [by_id[s] for s in r.stages]
        assert r.handoff_ms > 0
        assert r.latency_ms == pytest.approx(sum(s.time_ms for s in chain) + r.handoff_ms)
    # a route that leaves its hand-offs out is named
    bad = replace(multi[0], latency_ms=multi[0].latency_ms - multi[0].handoff_ms,
                  handoff_ms=0.0)
    errors = verify(w, replace(plan, routes=tuple(bad if r is multi[0] else r
                                                  for r in plan.routes)), V100)
    assert any("hand-offs" in e for e in errors), errors
    # moving a stage to another GPU makes its routes' hand-offs slower: named too
    moved = replace(by_id[multi[0].stages[0]], gpus=(99,) * by_id[multi[0].stages[0]].replicas)
    errors = verify(w, replace(plan, stages=tuple(moved if s.id == moved.id else s
                                                  for s in plan.stages)), V100)
    assert any("handoff_ms" in e for e in errors), errors


def test_realignment_pays_for_its_hops():
    # the same workload where every hand-off costs 20 ms: no route splits into stages
    w = synthetic_workload(V100, 40, EXTREME, models=("resnet50",), seed=3)
    slow = make_cost_model("analytic:v100,handoff_latency_ms=20")
    plan = make_planner("graft").plan(w, slow)
    assert verify(w, plan, slow) == []
    assert all(len(r.stages) == 1 for r in plan.routes)
    assert any(len(r.stages) > 1 for r in make_planner("graft").plan(w, V100).routes)


def test_verifier_checks_processes_and_memory_per_gpu():
    # 60 processes of 0.01 share on one 16 GiB V100, each holding resnet50's weights and
    # a CUDA context: shares fit, processes and memory do not
    L = get_model("resnet50").num_blocks
    stages = tuple(stage(f"s{i}", 0, L, share=0.01, batch=1) for i in range(60))
    flows = tuple(Flow(f"f{i}", "resnet50", 0, 10.0, 1e4) for i in range(60))
    routes = tuple(Route(f.id, (s.id,), s.time_ms) for f, s in zip(flows, stages))
    plan = Plan("hand", V100.name, stages, routes)
    errors = verify(Workload(flows), plan, V100)
    assert any("60 processes, more than the 48" in e for e in errors), errors
    memory = [e for e in errors if "GiB" in e]
    assert memory and "more than the 16.00 GiB" in memory[0]
    need = 60 * rules.process_memory_bytes(V100, [("resnet50", 0, L, 1)]) / 2**30
    assert f"{need:.2f} GiB" in memory[0]
    # every planner's plans keep within both limits
    w = synthetic_workload(V100, 200, EXTREME, seed=1)
    for name in ("graft", "gslice", "nexus"):
        assert verify(w, make_planner(name).plan(w, V100), V100) == []


def test_batch_overhead_is_a_named_setting_of_the_cost_model():
    tuned = make_cost_model("analytic:v100,batch_overhead_ms=0.5")
    assert tuned.name == "analytic:v100,batch_overhead_ms=0.5"
    for start, end in ((0, 18), (4, 9)):
        assert tuned.latency_ms("resnet50", start, end, 4, 0.3) == pytest.approx(
            V100.latency_ms("resnet50", start, end, 4, 0.3) + 0.48)
    # a plan made with it names it, and verifies against it
    w = Workload((Flow("x", "resnet50", 3, 100.0, 30.0),))
    plan = make_planner("graft").plan(w, tuned)
    assert plan.cost_model == tuned.name
    assert verify(w, plan, make_cost_model(plan.cost_model)) == []
    for bad in ("analytic:v100,batch_overhead_ms=-1", "analytic:v100,overhead=1",
                "analytic:v100,batch_overhead_ms=nan", "analytic:v100,batch_overhead_ms"):
        with pytest.raises(GraftInputError, match="batch_overhead_ms"):
            make_cost_model(bad)
