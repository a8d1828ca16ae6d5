"""The verifier accepts valid plans and names every broken rule."""

import json
from dataclasses import replace

import pytest

from graft.plan.plan import Plan, Route
from graft.plan.verify import verify
from graft.planner.gslice import GslicePlanner
from graft.planner.registry import make_planner
from graft.workload.flows import Flow, Workload

W = Workload((
    Flow("a", "tiny", 0, 120.0, 30.0),
    Flow("b", "tiny", 2, 300.0, 25.0),
    Flow("c", "tiny", 2, 50.0, 40.0),
    Flow("d", "tiny", 4, 80.0, 12.0),
))


@pytest.fixture
def plan(toy) -> Plan:
    return make_planner("graft").plan(W, toy)


def test_valid_plan_passes_and_round_trips(plan, toy):
    assert verify(W, plan, toy) == []
    again = Plan.from_json(json.loads(json.dumps(plan.to_json())))
    assert again.stages == plan.stages and again.routes == plan.routes
    assert verify(W, again, toy) == []


def _tamper_stage(plan: Plan, **changes) -> Plan:
    first = replace(plan.stages[0], **changes)
    return replace(plan, stages=(first, *plan.stages[1:]))


@pytest.mark.parametrize("changes, words", [
    ({"exec_ms": 0.001}, "differs from the cost model"),
    ({"rate": 1e9}, "rate"),
    ({"replicas": 2}, "gpus listed"),
    ({"share": 0.333}, "share grid"),
    ({"start": 5, "end": 3}, "not within"),
])
def test_tampered_stage_is_named(plan, toy, changes, words):
    errors = verify(W, _tamper_stage(plan, **changes), toy)
    assert errors and any(words in e for e in errors), errors


def test_route_rules(plan, toy):
    routes = {r.flow: r for r in plan.routes}
    # drop a route: the flow has none, and the stage rates no longer add up
    errors = verify(W, replace(plan, routes=tuple(r for r in plan.routes if r.flow != "a")), toy)
    assert any("flow a: no route" in e for e in errors)
    assert any("differs from the" in e for e in errors)
    # a wrong latency_ms
    bad = replace(routes["b"], latency_ms=routes["b"].latency_ms + 1)
    errors = verify(W, replace(plan, routes=tuple(bad if r.flow == "b" else r
                                                  for r in plan.routes)), toy)
    assert any("flow b: latency_ms" in e for e in errors)
    # a route that skips its partition's first stage
    d_stages = routes["d"].stages
    bad = Route("a", d_stages, routes["d"].latency_ms)
    errors = verify(W, replace(plan, routes=tuple(bad if r.flow == "a" else r
                                                  for r in plan.routes)), toy)
    assert any("flow a: route starts at block 4" in e for e in errors)


def test_over_budget_and_overloaded_gpu(toy):
    plan = GslicePlanner().plan(W, toy)
    tight = Workload(tuple(replace(f, budget_ms=f.budget_ms / 50) if f.id == "b" else f
                           for f in W.flows))
    assert any("flow b: route takes" in e for e in verify(tight, plan, toy))
    crowded = replace(plan, stages=tuple(replace(s, gpus=(0,) * s.replicas)
                                         for s in plan.stages))
    heavy = [s for s in crowded.stages]
    heavy[0] = replace(heavy[0], share=1.0, exec_ms=toy.latency_ms(
        heavy[0].model, heavy[0].start, heavy[0].end, heavy[0].batch, 1.0))
    errors = verify(W, replace(crowded, stages=tuple(heavy)), toy)
    assert any("gpu 0: shares sum" in e for e in errors)


def test_unserved_needs_allow_partial(plan, toy):
    from graft.plan.plan import Unserved

    p = replace(plan, routes=tuple(r for r in plan.routes if r.flow != "a"),
                unserved=(Unserved("a", 99.0),))
    assert any("allowed only with --allow-partial" in e for e in verify(W, p, toy))
    errors = verify(W, p, toy, allow_partial=True)
    assert not any("flow a" in e for e in errors)


def test_declared_totals_checked(plan, toy):
    data = plan.to_json()
    data["total_share"] += 0.5
    data["gpus"] += 3
    errors = verify(W, Plan.from_json(data), toy)
    assert any("total_share" in e for e in errors) and any("gpus 4" in e or "gpus" in e
                                                           for e in errors)
