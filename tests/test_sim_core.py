"""The simulator core: conservation, determinism, M/D/1, planned plans, slices, rejection."""

from collections import deque
from dataclasses import dataclass, replace

import numpy as np
import pytest

from graft.cost.base import DEFAULT_BATCHES, PERCENT_SHARES, DeviceLimits
from graft.plan.plan import Plan, Route, Stage
from graft.planner.registry import make_planner
from graft.serving.batching import Executor, take_batch
from graft.serving.lifecycle import RequestState
from graft.serving.metrics import summarize
from graft.sim import simulate_plan
from graft.sim.engine import EventLoop
from graft.workload.flows import Flow, Workload

from simworkloads import low_rate_workload, random_workload
from toycost import ToyCost

TOY = ToyCost(overhead_ms=0.3)


@dataclass(eq=False)
class ConstCost:
    """Every batch of every segment takes ``ms``: deterministic service."""

    ms: float
    name: str = "const"
    shares: tuple[float, ...] = PERCENT_SHARES
    batches: tuple[int, ...] = DEFAULT_BATCHES
    limits: DeviceLimits = DeviceLimits(memory_bytes=2**34, context_bytes=2**28)

    def latency_ms(self, model, start, end, batch, share) -> float:
        return self.ms

    def latency_grid(self, model, start, end):
        return np.full((len(self.batches), len(self.shares)), self.ms)


def one_stage_plan(exec_ms: float, rate: float, batch: int = 1) -> Plan:
    st = Stage(id="s", model="tiny", start=0, end=6, batch=batch, share=1.0, replicas=1,
               exec_ms=exec_ms, rate=rate, gpus=(0,))
    return Plan(planner="hand", cost_model="const", stages=(st,),
                routes=(Route("f", ("s",), 2 * exec_ms),))


def assert_conserved(result) -> None:
    m = result.metrics
    assert m["requests"] == len(result.requests) > 0
    assert m["requests"] == m["completed"] + m["dropped"] + m["rejected"]
    assert m["completed"] == m["on_time"] + m["late"]
    assert all(r.state.terminal for r in result.requests)
    assert sum(f["requests"] for f in m["per_flow"].values()) == m["requests"]


# -- the pieces ------------------------------------------------------------------------

def test_event_loop_orders_by_time_then_schedule_order_arrivals_first():
    loop = EventLoop()
    seen = []

    def mark(tag):
        seen.append((loop.now_ms, tag))
        if tag == "a":
            loop.schedule(loop.now_ms + 5, mark, "child")
            loop.schedule(loop.now_ms, mark, "a-now")  # after the other events at 3
        if tag == "arrival@3":
            loop.soon(mark, "arrival-now")

    for t, tag in ((3, "a"), (1, "b"), (3, "c"), (100, "late")):
        loop.schedule(t, mark, tag)
    assert loop.run([2.0, 3.0], mark, ["arrival@2", "arrival@3"], until_ms=50) == 8
    assert seen == [(1, "b"), (2, "arrival@2"), (3, "arrival@3"), (3, "a"), (3, "c"),
                    (3, "arrival-now"), (3, "a-now"), (8, "child")]
    assert loop.pending() == 1 and loop.now_ms == 8  # the event after the end time stays


def test_take_batch_is_fifo_and_drops_late_only_when_asked():
    @dataclass
    class Item:
        deadline_ms: float

    items = [Item(d) for d in (1.0, 10.0, 2.0, 20.0)]
    batch, dropped = take_batch(deque(items), 3, now_ms=5.0)
    assert batch == items[:3] and dropped == []
    q = deque(items)
    batch, dropped = take_batch(q, 2, now_ms=5.0, drop_late=True)
    assert batch == [items[1], items[3]] and dropped == [items[0], items[2]] and not q


def test_executor_takes_turns_round_robin_skipping_empty_members():
    @dataclass
    class Item:
        deadline_ms: float = 1e9

    ex = Executor(["a", "b", "c"], {"a": 2, "b": 1, "c": 5})
    for s, n in (("a", 3), ("c", 1)):
        for _ in range(n):
            ex.enqueue(s, Item())
    assert ex.load() == 4
    turns = [ex.next_turn(0.0) for _ in range(4)]
    assert [(t.stage, len(t.items)) for t in turns] == [("a", 2), ("c", 1), ("a", 1),
                                                          (None, 0)]


# -- whole runs ------------------------------------------------------------------------

@pytest.mark.parametrize("planner", ["graft", "gslice", "nexus"])
@pytest.mark.parametrize("seed", [0, 1])
def test_every_request_is_counted_once(planner, seed):
    w = random_workload(seed, 4)
    plan = make_planner(planner).plan(w, TOY)
    for kwargs in ({"jitter": 0.3}, {"jitter": 0.3, "drop_late": True},
                   {"drain_cap_s": 0.0, "jitter": 0.5}):
        result = simulate_plan(plan, w, TOY, duration_s=1.0, seed=seed, **kwargs)
        assert_conserved(result)
    # a hard stop right after the arrivals leaves some unfinished: they are dropped
    assert result.metrics["dropped"] >= 0


def test_same_seed_same_result_and_other_seed_differs():
    w = random_workload(3, 4)
    plan = make_planner("graft").plan(w, TOY)
    runs = [simulate_plan(plan, w, TOY, duration_s=1.0, seed=s, jitter=0.2) for s in (7, 7, 8)]
    lat = [[(r.flow, r.arrival_ms, r.completion_ms, r.state) for r in x.requests] for x in runs]
    assert lat[0] == lat[1] and runs[0].metrics == runs[1].metrics
    assert lat[0] != lat[2]


def test_single_stage_batch_one_matches_md1_waiting_time():
    # M/D/1: mean wait in queue = lambda e^2 / (2 (1 - rho)); e = 1 ms, rho = 0.6
    e_ms, rate = 1.0, 600.0
    rho = rate * e_ms / 1000.0
    expected = (rate / 1000.0) * e_ms**2 / (2 * (1 - rho))
    w = Workload((Flow("f", "tiny", 0, rate, 1e6),))
    result = simulate_plan(one_stage_plan(e_ms, rate), w, ConstCost(e_ms), duration_s=60.0,
                           seed=11)
    waits = [r.latency_ms - e_ms for r in result.requests]
    assert result.metrics["on_time"] == len(waits)
    assert abs(np.mean(waits) - expected) / expected < 0.05


def test_planned_graft_meets_every_deadline_at_fixed_rates():
    for seed in (3, 4):
        w = random_workload(seed, 5)
        plan = make_planner("graft").plan(w, TOY)
        fixed = simulate_plan(plan, w, TOY, duration_s=2.0, seed=seed, arrivals="fixed")
        assert_conserved(fixed)
        assert fixed.metrics["slo_attainment"] == 1.0
        # Poisson bursts can exceed a stage's capacity for a while (the planner runs stages
        # close to full utilisation): only conservation is asserted there
        assert_conserved(simulate_plan(plan, w, TOY, duration_s=2.0, seed=seed))


def test_time_shared_slices_run_and_conserve():
    w = low_rate_workload()
    plan = make_planner("graft").plan(w, TOY)
    assert any(s.slice for s in plan.stages)
    for arrivals in ("fixed", "poisson"):
        result = simulate_plan(plan, w, TOY, duration_s=5.0, seed=2, arrivals=arrivals)
        assert_conserved(result)
        assert result.metrics["rejected"] == 0 and result.metrics["dropped"] == 0
    assert simulate_plan(plan, w, TOY, duration_s=5.0, seed=2,
                         arrivals="fixed").metrics["slo_attainment"] == 1.0


def test_flow_without_route_is_rejected():
    w = low_rate_workload()
    plan = make_planner("graft").plan(w, TOY)
    plan = replace(plan, routes=tuple(r for r in plan.routes if r.flow != "f0"))
    m = simulate_plan(plan, w, TOY, duration_s=2.0, seed=0).metrics
    assert m["rejected"] == m["per_flow"]["f0"]["requests"] > 0
    assert m["per_flow"]["f0"]["slo_attainment"] == 0.0
    assert m["per_flow"]["f1"]["requests"] > 0 and m["rejected"] + m["completed"] == m["requests"]


def test_summarize_rejects_unfinished_requests():
    result = simulate_plan(one_stage_plan(1.0, 10.0), Workload((Flow("f", "tiny", 0, 10.0,
                                                                     5.0),)),
                           ConstCost(1.0), duration_s=1.0)
    result.requests[0].state = RequestState.QUEUED
    with pytest.raises(ValueError):
        summarize(result.requests)
