"""The simulator against a deliberately plain reference: same seed, same outcome.

``reference_serve`` below is the serving semantics written for clarity, not speed: one heap
of every event keyed (time, push order), arrivals pushed first in time order, a Python
object per executor, one jitter draw per batch in the order batches form. The simulator
(``simulate_requests``) must give every request the same terminal state and completion time
on every kind of plan: single stages, multi-stage routes, replicas under join-shortest-queue,
time-shared slices, temporal plans (one executor per GPU, a stage twice on one GPU),
``forward_ms`` > 0, ``drop_late``, jitter, unrouted and unknown flows, arrivals already past
their deadline, and the drain cap. Integer arrival and execution times make ties common, so
the order of events at one instant is exercised too.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import defaultdict, deque
from dataclasses import asdict, dataclass, field

import numpy as np
import pytest

import graft.sim.run as run_module
from graft.client.traffic import ClientRequest
from graft.cost.base import DEFAULT_BATCHES, PERCENT_SHARES, DeviceLimits, Links
from graft.plan import rules
from graft.plan.plan import TEMPORAL, Plan, Route, Stage
from graft.planner.registry import make_planner
from graft.serving.arrivals import ArrivalColumns, ServerArrival
from graft.serving.lifecycle import RequestState
from graft.serving.metrics import Outcomes
from graft.serving.routing import route_columns, route_requests
from graft.sim.run import run_scenario
from graft.sim.scenario import parse_scenario
from graft.sim.server import simulate_requests
from graft.workload.flows import Flow, Workload

from simworkloads import low_rate_workload, random_workload
from toycost import ToyCost

TOY = ToyCost(overhead_ms=0.3)


@dataclass(eq=False)
class StepCost:
    """A batch of ``n`` in a segment of ``k`` blocks takes ``k + n // 2`` whole ms (at any
    share): integer times, so events often coincide."""

    name: str = "step"
    shares: tuple[float, ...] = PERCENT_SHARES
    batches: tuple[int, ...] = DEFAULT_BATCHES
    limits: DeviceLimits = DeviceLimits(memory_bytes=2**34, context_bytes=2**28)
    #: every hand-off between processes takes 1 ms whatever its size: whole ms again
    links: Links = Links(device_bytes_per_s=math.inf, interconnect_bytes_per_s=math.inf,
                         latency_ms=1.0)
    cache: dict = field(default_factory=dict)

    def latency_ms(self, model, start, end, batch, share) -> float:
        return float(end - start + batch // 2)

    def latency_grid(self, model, start, end):
        b = np.asarray(self.batches, dtype=float)[:, None]
        return np.broadcast_to(end - start + b // 2, (len(self.batches), len(self.shares)))


STEP = StepCost()

# ------------------------------------------------------------------ the reference


@dataclass
class _RefExecutor:
    members: list[str]
    batch: dict[str, int]
    queues: dict[str, deque] = field(default_factory=dict)
    busy: bool = False
    in_flight: int = 0
    turn: int = 0

    def load(self) -> int:
        return sum(len(q) for q in self.queues.values()) + self.in_flight


def _ref_executors(plan: Plan) -> tuple[list[_RefExecutor], dict[str, list[int]]]:
    """One executor per stage replica, per slice replica, or per GPU of a temporal plan."""
    groups: dict[tuple, list[str]] = {}
    for st in plan.stages:
        for r in range(st.replicas):
            if plan.gpu_sharing == TEMPORAL and len(st.gpus) == st.replicas:
                key: tuple = ("gpu", st.gpus[r])
            elif st.slice is not None:
                key = ("slice", st.slice, r)
            else:
                key = ("stage", st.id, r)
            groups.setdefault(key, []).append(st.id)
    batch = {st.id: st.batch for st in plan.stages}
    executors, replicas = [], defaultdict(list)
    for members in groups.values():
        ex = _RefExecutor(members, batch, {m: deque() for m in members})
        for m in dict.fromkeys(members):
            replicas[m].append(len(executors))
        executors.append(ex)
    return executors, replicas


def reference_serve(plan: Plan, arrivals: list[ServerArrival], cost, *, seed: int = 0,
                    jitter: float = 0.0, drop_late: bool = False, drain_cap_s: float = 60.0,
                    forward_ms: float = 0.0, horizon_ms: float | None = None
                    ) -> list[tuple[str, float | None]]:
    """(terminal state, completion ms or None) of every arrival, by a plain event loop."""
    executors, replicas = _ref_executors(plan)
    routes = {r.flow: r.stages for r in plan.routes}
    stages = plan.stage_by_id()
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1])
    state: list[str] = ["arrived"] * len(arrivals)
    done: list[float | None] = [None] * len(arrivals)
    hop = [0] * len(arrivals)
    heap: list = []
    seq = itertools.count()

    def push(t: float, *event) -> None:
        heapq.heappush(heap, (t, next(seq), event))

    def enqueue(now: float, i: int) -> None:
        stage = routes[arrivals[i].flow][hop[i]]
        index = min(replicas[stage], key=lambda k: executors[k].load())
        ex = executors[index]
        ex.queues[stage].append(i)
        if not ex.busy:
            ex.busy = True
            push(now, "start", index)

    def start(now: float, index: int) -> None:
        ex = executors[index]
        for k in range(len(ex.members)):
            at = (ex.turn + k) % len(ex.members)
            stage, queue, items = ex.members[at], ex.queues[ex.members[at]], []
            while queue and len(items) < ex.batch[stage]:
                i = queue.popleft()
                if drop_late and arrivals[i].deadline_ms < now:
                    state[i] = "dropped"
                else:
                    items.append(i)
            if items:
                ex.turn = (at + 1) % len(ex.members)
                ex.in_flight = len(items)
                st = stages[stage]
                share = 1.0 if plan.gpu_sharing == TEMPORAL else st.run_share
                ms = cost.latency_ms(st.model, st.start, st.end, len(items), share)
                if jitter > 0:
                    ms *= max(0.5, 1.0 + jitter * rng.standard_normal())
                push(now + ms, "end", index, items)
                return
        ex.busy = False

    def end(now: float, index: int, items: list[int]) -> None:
        executors[index].in_flight = 0
        for i in items:
            route = routes[arrivals[i].flow]
            hop[i] += 1
            if hop[i] < len(route):
                a, b = stages[route[hop[i] - 1]], stages[route[hop[i]]]
                handoff = rules.handoff_ms(cost, a.model, a.end, len(items),
                                           rules.handoff_kind(a, b))
                push(now + forward_ms + handoff, "forward", i)
            else:
                push(now, "complete", i)
        push(now, "start", index)

    for i in sorted(range(len(arrivals)), key=lambda k: arrivals[k].arrival_ms):
        if arrivals[i].flow is None:
            state[i] = "rejected"
        else:
            push(arrivals[i].arrival_ms, "arrive", i)
    if horizon_ms is None:
        horizon_ms = max((a.arrival_ms for a in arrivals), default=0.0)
    until = horizon_ms + drain_cap_s * 1000.0
    while heap and heap[0][0] <= until:
        now, _, event = heapq.heappop(heap)
        kind, arg = event[0], event[1:]
        if kind == "arrive":
            if arrivals[arg[0]].flow in routes:
                enqueue(now, arg[0])
            else:
                state[arg[0]] = "rejected"
        elif kind == "start":
            start(now, arg[0])
        elif kind == "end":
            end(now, *arg)
        elif kind == "forward":
            enqueue(now, arg[0])
        else:
            state[arg[0]], done[arg[0]] = "completed", now
    return [(s if s in ("completed", "dropped", "rejected") else "dropped", d)
            for s, d in zip(state, done, strict=True)]


def reference_summarize(requests) -> dict:
    """``summarize`` written plainly: counts, attainment, percentiles, per flow and model."""
    def attainment(reqs):
        on_time = sum(r.on_time for r in reqs)
        return {"requests": len(reqs), "on_time": on_time,
                "slo_attainment": on_time / len(reqs) if reqs else 1.0}

    def by(key):
        groups = defaultdict(list)
        for r in requests:
            groups[key(r)].append(r)
        return {k: attainment(v) for k, v in sorted(groups.items())}

    done = [r for r in requests if r.state.value == "completed"]
    lat = np.array([r.latency_ms for r in done])
    out = attainment(requests)
    out.update({
        "completed": len(done), "late": len(done) - out["on_time"],
        "dropped": sum(r.state.value == "dropped" for r in requests),
        "rejected": sum(r.state.value == "rejected" for r in requests),
        "p50_ms": float(np.percentile(lat, 50)) if lat.size else None,
        "p99_ms": float(np.percentile(lat, 99)) if lat.size else None,
        "per_flow": by(lambda r: r.flow), "per_model": by(lambda r: r.model)})
    return out


# ------------------------------------------------------------------ cases


def stage(sid: str, start: int, end: int, *, batch: int = 4, replicas: int = 1,
          gpus: tuple[int, ...] = (), slice_: str | None = None) -> Stage:
    return Stage(id=sid, model="tiny", start=start, end=end, batch=batch, share=0.5,
                 replicas=replicas, exec_ms=1.0, rate=1.0, gpus=gpus or tuple(range(replicas)),
                 slice=slice_, slice_share=0.5 if slice_ else None,
                 duty_cycle_ms=5.0 if slice_ else None)


def plan_of(stages: list[Stage], routes: dict[str, tuple[str, ...]],
            sharing: str = "spatial") -> Plan:
    return Plan(planner="hand", cost_model="any", stages=tuple(stages),
                routes=tuple(Route(f, s, 10.0) for f, s in routes.items()), gpu_sharing=sharing)


#: Hand-made plans: name -> (plan, {flow: partition}).
HAND = {
    "single": (plan_of([stage("s", 0, 6, batch=3)], {"f": ("s",)}), {"f": 0}),
    "chain-jsq": (plan_of(
        [stage("a", 0, 2, batch=2), stage("b", 2, 4, batch=3, replicas=3),
         stage("c", 4, 6, batch=5, replicas=2)],
        {"f0": ("a", "b", "c"), "f2": ("b", "c"), "f4": ("c",)}), {"f0": 0, "f2": 2, "f4": 4}),
    "slices": (plan_of(
        [stage("x", 0, 2, batch=2, replicas=2, slice_="sl"),
         stage("y", 2, 4, batch=3, replicas=2, slice_="sl"),
         stage("z", 4, 6, batch=1, replicas=2, slice_="sl"), stage("w", 4, 6, batch=4)],
        {"f0": ("x", "y", "z"), "f2": ("y", "z"), "f4": ("w",)}), {"f0": 0, "f2": 2, "f4": 4}),
    "temporal": (plan_of(
        [stage("t1", 0, 3, batch=2, gpus=(0,)), stage("t2", 3, 6, batch=3, replicas=2,
                                                       gpus=(0, 1)),
         stage("t3", 3, 6, batch=2, replicas=2, gpus=(1, 1))],
        {"f0": ("t1", "t2"), "f3": ("t3",)}, sharing=TEMPORAL), {"f0": 0, "f3": 3}),
}


def tied_arrivals(partitions: dict[str, int], n: int, span_ms: int, seed: int
                  ) -> list[ServerArrival]:
    """``n`` arrivals at whole ms in ``[0, span_ms)`` (many at one instant), in shuffled
    order, on the given flows plus a few with no route (None) and an unknown flow; budgets
    from -5 ms (already late) to 40 ms."""
    rng = np.random.default_rng(seed)
    flows = [*partitions, None, "ghost"]
    weights = np.array([10.0] * len(partitions) + [1.0, 1.0])
    picks = rng.choice(len(flows), size=n, p=weights / weights.sum())
    out = []
    for k, t in zip(picks, rng.integers(0, span_ms, size=n), strict=True):
        flow = flows[k]
        budget = float(rng.integers(-5, 40))
        out.append(ServerArrival(float(t), flow, float(t) + budget, "tiny",
                                 partitions.get(flow, 0), tag=len(out)))
    return out


KWARGS = [{}, {"drop_late": True}, {"jitter": 0.3}, {"forward_ms": 0.5},
          {"forward_ms": 1.0, "drop_late": True, "jitter": 0.2}, {"drain_cap_s": 0.005},
          {"drain_cap_s": 0.0, "jitter": 0.4, "forward_ms": 2.0}]


def assert_same(plan: Plan, arrivals: list[ServerArrival], cost, **kw) -> None:
    got = simulate_requests(plan, arrivals, cost, seed=3, **kw)
    want = reference_serve(plan, arrivals, cost, seed=3, **kw)
    assert len(got.requests) == len(want)
    for req, (st, done) in zip(got.requests, want, strict=True):
        assert req.state.value == st, (req.id, kw)
        if done is None:
            assert req.completion_ms is None or st != "completed"
        else:
            assert req.completion_ms == pytest.approx(done, abs=1e-9, rel=0), (req.id, kw)
    assert got.metrics == reference_summarize(got.requests)


@pytest.mark.parametrize("name", sorted(HAND))
@pytest.mark.parametrize("kw", KWARGS, ids=lambda kw: ",".join(kw) or "plain")
def test_hand_plans_match_the_reference(name, kw):
    plan, partitions = HAND[name]
    for cost, span in ((STEP, 300), (TOY, 60)):
        assert_same(plan, tied_arrivals(partitions, 400, span, seed=len(name)), cost, **kw)


def poisson_arrivals(w: Workload, duration_ms: float, seed: int, scale: float = 1.0
                     ) -> list[ServerArrival]:
    """Each flow's Poisson arrivals at ``scale`` times its rate, in flow order (unsorted)."""
    rng = np.random.default_rng(seed)
    out = []
    for f in w.flows:
        n = rng.poisson(f.rate * scale * duration_ms / 1000.0)
        for t in rng.uniform(0, duration_ms, size=n):
            out.append(ServerArrival(float(t), f.id, float(t) + f.budget_ms, f.model,
                                     f.partition))
    return out


@pytest.mark.parametrize("planner", ["graft", "gslice", "nexus"])
@pytest.mark.parametrize("workload", ["random", "low-rate"])
def test_planned_plans_match_the_reference(planner, workload):
    w = random_workload(5, 5) if workload == "random" else low_rate_workload()
    plan = make_planner(planner).plan(w, TOY)
    for scale, kw in ((1.0, {"jitter": 0.1}), (1.5, {"drop_late": True}),
                      (1.5, {"forward_ms": 0.2, "drain_cap_s": 0.01})):
        assert_same(plan, poisson_arrivals(w, 1500.0, seed=7, scale=scale), TOY, **kw)


def test_no_arrivals_and_only_rejections():
    plan, _ = HAND["single"]
    assert simulate_requests(plan, [], STEP).requests == []
    rejected = [ServerArrival(1.0, None, 5.0, "tiny", 0), ServerArrival(2.0, "ghost", 5.0,
                                                                       "tiny", 0)]
    got = simulate_requests(plan, rejected, STEP)
    assert [r.state.value for r in got.requests] == ["rejected", "rejected"]
    assert math.isclose(got.end_ms, 2.0)


# ------------------------------------------------------------------ routing and the run tally


def reference_route(requests, plan: Plan, workload: Workload) -> list[str | None]:
    """The routed flow of each request: of its (model, partition)'s routed flows sorted by
    (budget, id), the last with budget not above its own, else the first; None if none, or
    if the request's budget is below the sum of that route's stage exec_ms."""
    routed = {r.flow for r in plan.routes}
    exec_ms = {s.id: s.exec_ms for s in plan.stages}
    least = {r.flow: sum(exec_ms[s] for s in r.stages) for r in plan.routes}
    out = []
    for r in requests:
        cands = sorted((f for f in workload.flows if f.id in routed
                        and (f.model, f.partition) == (r.model, r.partition)),
                       key=lambda f: (f.budget_ms, f.id))
        fits = [f for f in cands if f.budget_ms <= r.budget_ms]
        pick = fits[-1].id if fits else (cands[0].id if cands else None)
        out.append(pick if pick is not None and r.budget_ms >= least[pick] else None)
    return out


def test_routing_matches_the_reference():
    rng = np.random.default_rng(11)
    # budgets on a coarse grid: requests often tie with flows, and flows with each other
    flows = [Flow(f"f{k}", "tiny", int(rng.integers(0, 4)), 1.0, float(rng.integers(1, 6) * 5))
             for k in range(14)]
    w = Workload(tuple(flows))
    plan = plan_of([stage("s", 0, 6)], {f.id: ("s",) for f in flows if f.partition != 3
                                        and f.id != "f0"})
    reqs = [ClientRequest(client="c", model="tiny", partition=int(rng.integers(0, 5)),
                          send_ms=t - 5.0, arrival_ms=t, budget_ms=float(rng.integers(-1, 7) * 5),
                          head_ms=1.0, upload_ms=1.0, estimate_mbps=8.0)
            for t in rng.uniform(0, 100, size=300)]
    routed = route_requests(reqs, plan, w, TOY)
    assert [a.flow for a in routed] == reference_route(reqs, plan, w)
    assert [a.tag for a in routed] == reqs
    assert [a.deadline_ms for a in routed] == [r.arrival_ms + r.budget_ms for r in reqs]
    assert ArrivalColumns.of(routed) == route_columns(reqs, plan, w, TOY)


def reference_serve_epoch(ctx, ep, index, out) -> None:
    """``graft.sim.run._serve`` written plainly: one ``ServerArrival`` and one pass per
    request."""
    idx = [i for i, r in enumerate(ctx.requests) if ep.start_ms <= r.arrival_ms < ep.end_ms]
    reqs = [ctx.requests[i] for i in idx]
    last_done = 0.0
    states, on_time, done, lat = [], [], [], []
    if ep.cand.plan is None:
        states = [RequestState.REJECTED] * len(reqs)
        on_time, done, lat = [False] * len(reqs), [math.nan] * len(reqs), [math.nan] * len(reqs)
    elif reqs:
        res = simulate_requests(ep.cand.plan, route_requests(reqs, ep.cand.plan,
                                                             ep.cand.workload, ctx.cost),
                                ctx.cost, seed=ctx.seed + index, jitter=ctx.scenario.jitter)
        for sreq, creq, i in zip(res.requests, reqs, idx, strict=True):
            states.append(sreq.state)
            on_time.append(sreq.on_time)
            completed = sreq.state is RequestState.COMPLETED
            done.append(sreq.completion_ms if completed else math.nan)
            lat.append(sreq.completion_ms - creq.send_ms + float(ctx.columns.return_ms[i])
                       if completed else math.nan)
            if completed:
                last_done = max(last_done, sreq.completion_ms)
    if reqs:
        def mask(state):
            return np.array([s is state for s in states])
        out.add(Outcomes(mask(RequestState.COMPLETED), mask(RequestState.DROPPED),
                         mask(RequestState.REJECTED), np.array(on_time), np.array(done)),
                np.array(lat), np.array(idx, dtype=np.intp))
    end = ep.end_ms if math.isfinite(ep.end_ms) else ctx.scenario.duration_s * 1000.0
    ep.hold_end_ms = max(end, last_done)


def test_run_tally_matches_the_reference(monkeypatch):
    sc = parse_scenario({
        "name": "mix", "duration_s": 9, "seed": 2, "jitter": 0.1,
        "replan": {"period_s": 3, "window_s": 3, "hysteresis": 0.0, "startup_s": 0.5},
        "clients": [{"count": 4, "model": "tiny", "device": "jetson", "slo_ms": 120,
                     "rate": 15, "trace": "synthetic:wifi"},
                    {"count": 3, "model": "mobilenet_v2", "device": "phone-npu",
                     "slo_ms": 150, "rate": 10, "trace": "synthetic:lte", "start_s": 4}]})
    planners = ["graft", "nexus"]
    fast = run_scenario(sc, planners)
    monkeypatch.setattr(run_module, "_serve", reference_serve_epoch)
    plain = run_scenario(sc, planners)
    timing = {"sim_requests_per_s", "wall_s", "plan_s", "serve_s"}
    for name in planners:
        a, b = asdict(fast[name]), asdict(plain[name])
        assert {k: v for k, v in a.items() if k not in timing} == \
            {k: v for k, v in b.items() if k not in timing}
        assert fast[name].plans >= 1 and fast[name].dropped + fast[name].rejected > 0
        assert fast[name].plan_s + fast[name].serve_s == pytest.approx(fast[name].wall_s)
