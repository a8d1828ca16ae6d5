"""Simulate a plan serving requests: ``simulate_requests`` and ``simulate_plan``.

``simulate_requests`` serves an explicit list of server-side arrivals (``ServerArrival``:
arrival time, the plan flow whose route it takes, deadline, model, partition and an opaque
``tag``); the request made from ``arrivals[i]`` has id ``i``, so a caller finds its tags again.
An arrival whose flow is None (no route chosen for it) is REJECTED at once. An arrival already
past its deadline is still served and counts as late (or DROPPED at batch formation with
``drop_late``). ``simulate_plan`` generates the arrivals of a workload and calls it.

In ``simulate_plan`` every flow sends requests at its rate (Poisson, or fixed intervals at
a seeded random phase), each with the flow's ``budget_ms`` as its server deadline. Every
stage replica is one executor running the batching policy of ``graft.sim.batching``; the
stages of one time-shared slice share one executor per slice replica, and in a temporal
plan each GPU's sessions share one executor (they run at share 1.0). A request picks a
replica by join-shortest-queue. A batch of ``n`` takes
``cost.latency_ms(model, start, end, n, share)`` times ``max(0.5, 1 + jitter * N(0, 1))``.
After ``duration_s`` (``simulate_requests``: the last arrival, or ``horizon_ms``) no request
arrives; the run drains, up to ``drain_cap_s`` more, and requests still unfinished then are
DROPPED. Every request ends in exactly one terminal state.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from graft.cost.base import CostModel
from graft.planner.plan import TEMPORAL, Plan, Stage
from graft.sim.batching import Executor
from graft.sim.engine import EventQueue, run
from graft.sim.events import RequestArrival
from graft.sim.lifecycle import Request, RequestState
from graft.sim.metrics import summarize
from graft.workload.flows import Flow, Workload

log = logging.getLogger(__name__)

ARRIVALS = ("poisson", "fixed")
#: Smallest factor jitter can scale a batch's execution time by.
MIN_JITTER_FACTOR = 0.5


@dataclass
class ServerState:
    """What events read and change: the clock, routes, executors and the cost of a batch."""

    plan: Plan
    cost: CostModel
    executors: list[Executor[Request]]
    #: stage id -> indices of the executors serving it (one per replica)
    replicas: dict[str, list[int]]
    #: flow id -> stage ids of its route
    routes: dict[str, tuple[str, ...]]
    jitter: float = 0.0
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(0))
    drop_late: bool = False
    forward_ms: float = 0.0
    now_ms: float = 0.0
    _stages: dict[str, Stage] = field(default_factory=dict)
    _latency: dict[tuple[str, int], float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._stages = self.plan.stage_by_id()

    def pick_executor(self, stage: str) -> int:
        """Join the shortest queue among the stage's replicas (the first on ties)."""
        return min(self.replicas[stage], key=lambda i: self.executors[i].load())

    def batch_ms(self, executor: int, stage: str, n: int) -> float:
        """Execution time of a batch of ``n`` in ``stage`` (jittered when asked)."""
        key = (stage, n)
        if key not in self._latency:
            st = self._stages[stage]
            share = 1.0 if self.plan.gpu_sharing == TEMPORAL else st.run_share
            self._latency[key] = self.cost.latency_ms(st.model, st.start, st.end, n, share)
        base = self._latency[key]
        if self.jitter <= 0.0:
            return base
        return base * max(MIN_JITTER_FACTOR, 1.0 + self.jitter * self.rng.standard_normal())


@dataclass
class Result:
    """Every request of a run, each in its terminal state, and their metrics."""

    requests: list[Request]
    metrics: dict[str, Any]
    events: int
    end_ms: float


def build_executors(plan: Plan) -> tuple[list[Executor[Request]], dict[str, list[int]]]:
    """One executor per stage replica, per slice replica, or per GPU of a temporal plan."""
    groups: dict[tuple, list[str]] = defaultdict(list)
    for st in plan.stages:
        for r in range(st.replicas):
            if plan.gpu_sharing == TEMPORAL and len(st.gpus) == st.replicas:
                key: tuple = ("gpu", st.gpus[r])
            elif st.slice is not None:
                key = ("slice", st.slice, r)
            else:
                key = ("stage", st.id, r)
            groups[key].append(st.id)
    batches = {st.id: st.batch for st in plan.stages}
    executors: list[Executor[Request]] = []
    replicas: dict[str, list[int]] = defaultdict(list)
    for members in groups.values():
        index = len(executors)
        executors.append(Executor(members, {m: batches[m] for m in set(members)}))
        for m in set(members):
            replicas[m].append(index)
    return executors, dict(replicas)


@dataclass(frozen=True)
class ServerArrival:
    """One request reaching the server: when, which plan flow's route it takes (None: no
    route, REJECTED), its deadline (server clock, ms), and an opaque ``tag`` (e.g. the
    client request it came from) that the simulator never reads."""

    arrival_ms: float
    flow: str | None
    deadline_ms: float
    model: str
    partition: int
    tag: Any = None


#: The ``Request.flow`` of an arrival that has no flow (rejected without a route).
UNROUTED = "(unrouted)"


def arrival_times_ms(flow: Flow, duration_s: float, rng: np.random.Generator,
                     arrivals: str) -> np.ndarray:
    """Arrival times in [0, duration) ms: Poisson at ``flow.rate``, or every ``1/rate`` s
    from a random phase."""
    return times_at_rate_ms(flow.rate, duration_s, rng, arrivals)


def times_at_rate_ms(rate: float, duration_s: float, rng: np.random.Generator,
                     arrivals: str) -> np.ndarray:
    """Times in [0, duration) ms: Poisson at ``rate`` per second, or every ``1/rate`` s from
    a random phase."""
    if arrivals not in ARRIVALS:
        raise ValueError(f"arrivals must be one of {ARRIVALS}, got {arrivals!r}")
    horizon_ms = duration_s * 1000.0
    gap_ms = 1000.0 / rate
    if arrivals == "fixed":
        return np.arange(rng.uniform(0.0, gap_ms), horizon_ms, gap_ms)
    expected = horizon_ms / gap_ms
    chunk = int(expected + 6.0 * np.sqrt(expected) + 16)
    times = np.cumsum(rng.exponential(gap_ms, size=chunk))
    while times[-1] < horizon_ms:
        more = times[-1] + np.cumsum(rng.exponential(gap_ms, size=chunk))
        times = np.concatenate([times, more])
    return times[times < horizon_ms]


def make_requests(workload: Workload, duration_s: float, rng: np.random.Generator,
                  arrivals: str) -> list[Request]:
    """Every request of every flow, ordered by arrival time (ties by flow order)."""
    out: list[tuple[float, int, Flow]] = []
    for k, f in enumerate(workload.flows):
        out += [(float(t), k, f) for t in arrival_times_ms(f, duration_s, rng, arrivals)]
    out.sort(key=lambda x: (x[0], x[1]))
    return [Request(id=i, flow=f.id, model=f.model, partition=f.partition, arrival_ms=t,
                    deadline_ms=t + f.budget_ms) for i, (t, _, f) in enumerate(out)]


def simulate_plan(plan: Plan, workload: Workload, cost: CostModel, *, duration_s: float,
                  seed: int = 0, jitter: float = 0.0, arrivals: str = "poisson",
                  drop_late: bool = False, drain_cap_s: float = 60.0,
                  forward_ms: float = 0.0) -> Result:
    """Run ``plan`` on ``workload`` for ``duration_s`` of arrivals, then drain.

    ``jitter`` is the relative standard deviation of batch execution times; ``drop_late``
    drops requests already past their deadline when a batch forms (default: they run and
    count as late); ``forward_ms`` is the hand-off time between consecutive stages.
    """
    if arrivals not in ARRIVALS:
        raise ValueError(f"arrivals must be one of {ARRIVALS}, got {arrivals!r}")
    if duration_s <= 0:
        raise ValueError("duration_s must be positive")
    arrival_seq, _ = np.random.SeedSequence(seed).spawn(2)
    requests = make_requests(workload, duration_s, np.random.default_rng(arrival_seq),
                             arrivals)
    server_arrivals = [ServerArrival(r.arrival_ms, r.flow, r.deadline_ms, r.model, r.partition)
                       for r in requests]
    return simulate_requests(plan, server_arrivals, cost, seed=seed, jitter=jitter,
                             drop_late=drop_late, drain_cap_s=drain_cap_s,
                             forward_ms=forward_ms, horizon_ms=duration_s * 1000.0)


def simulate_requests(plan: Plan, arrivals: Sequence[ServerArrival], cost: CostModel, *,
                      seed: int = 0, jitter: float = 0.0, drop_late: bool = False,
                      drain_cap_s: float = 60.0, forward_ms: float = 0.0,
                      horizon_ms: float | None = None) -> Result:
    """Serve ``arrivals`` with ``plan``; the request of ``arrivals[i]`` has id ``i``.

    Arrivals are taken in time order (ties in list order). The run stops at ``horizon_ms``
    (default: the last arrival) plus ``drain_cap_s``. Jitter draws come from the second
    child of ``SeedSequence(seed)``, as in ``simulate_plan``, so both give the same result
    on the same arrivals and seed. Other arguments as in ``simulate_plan``.
    """
    if jitter < 0 or drain_cap_s < 0:
        raise ValueError("jitter and drain_cap_s must be non-negative")
    order = sorted(range(len(arrivals)), key=lambda i: arrivals[i].arrival_ms)
    requests = [Request(id=i, flow=a.flow if a.flow is not None else UNROUTED, model=a.model,
                        partition=a.partition, arrival_ms=a.arrival_ms,
                        deadline_ms=a.deadline_ms) for i, a in enumerate(arrivals)]
    _, jitter_seq = np.random.SeedSequence(seed).spawn(2)
    executors, replicas = build_executors(plan)
    state = ServerState(plan=plan, cost=cost, executors=executors, replicas=replicas,
                        routes={r.flow: r.stages for r in plan.routes}, jitter=jitter,
                        rng=np.random.default_rng(jitter_seq), drop_late=drop_late,
                        forward_ms=forward_ms)
    queue: EventQueue[ServerState] = EventQueue()
    for i in order:
        if arrivals[i].flow is None:
            requests[i].state = RequestState.REJECTED
        else:
            queue.push(RequestArrival(requests[i].arrival_ms, requests[i]))
    if horizon_ms is None:
        horizon_ms = max((a.arrival_ms for a in arrivals), default=0.0)
    end_ms = horizon_ms + drain_cap_s * 1000.0
    events = run(state, queue, until_ms=end_ms)
    unfinished = [r for r in requests if not r.state.terminal]
    for r in unfinished:
        r.state = RequestState.DROPPED
    if unfinished:
        log.info("stopped at %.0f ms with %d requests unfinished (dropped)", end_ms,
                 len(unfinished))
    log.info("simulated %d requests, %d events", len(requests), events)
    return Result(requests=requests, metrics=summarize(requests), events=events,
                  end_ms=state.now_ms)
