"""Simulate a plan serving requests: ``simulate_requests`` and ``simulate_plan``.

``simulate_requests`` serves an explicit list of server-side arrivals (``ServerArrival``:
arrival time, the plan flow whose route it takes, deadline, model, partition and an opaque
``tag``); the request made from ``arrivals[i]`` has id ``i``, so a caller finds its tags again.
An arrival whose flow is None (no route chosen for it) is REJECTED at once. An arrival already
past its deadline is still served and counts as late (or DROPPED at batch formation with
``drop_late``). ``simulate_plan`` generates the arrivals of a workload and calls it.

In ``simulate_plan`` every flow sends requests at its rate (Poisson, or fixed intervals at
a seeded random phase), each with the flow's ``budget_ms`` as its server deadline. Every
stage replica is one executor running the batching policy of ``graft.serving.batching``; the
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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from graft.cost.base import CostModel
from graft.plan.plan import TEMPORAL, Plan
from graft.serving.arrivals import UNROUTED, ArrivalColumns, ServerArrival
from graft.serving.lifecycle import Request, RequestState
from graft.serving.metrics import Outcomes, outcomes, summarize
from graft.serving.topology import build_executors, route_handoffs
from graft.sim.engine import EventLoop
from graft.sim.events import Hop, ServerState
from graft.workload.arrivals import ARRIVALS, times_at_rate_ms
from graft.workload.flows import Flow, Workload

log = logging.getLogger(__name__)

#: Smallest factor jitter can scale a batch's execution time by.
MIN_JITTER_FACTOR = 0.5
#: Jitter normals drawn at a time.
JITTER_BLOCK = 1024


class BatchTimes:
    """``ms(stage, n)``: the execution time of a batch of ``n`` in ``stage``,
    ``cost.latency_ms`` (at share 1.0 in a temporal plan, else the stage's run share; each
    (stage, n) computed once) times ``max(0.5, 1 + jitter * N(0, 1))`` with one draw per
    batch. The normals are drawn ``JITTER_BLOCK`` at a time, which gives the same numbers
    in the same order as one draw per call."""

    def __init__(self, plan: Plan, cost: CostModel, jitter: float = 0.0,
                 rng: np.random.Generator | None = None) -> None:
        self._plan, self._cost, self._jitter = plan, cost, jitter
        self._rng = rng if rng is not None else np.random.default_rng(0)
        self._stages = plan.stage_by_id()
        self._table: dict[str, list[float | None]] = {
            st.id: [None] * (st.batch + 1) for st in plan.stages}
        self._factors: list[float] = []
        self._next = 0

    def ms(self, stage: str, n: int) -> float:
        """The time of one batch of ``n`` in ``stage``, ms."""
        row = self._table[stage]
        base = row[n]
        if base is None:
            base = row[n] = self._latency(stage, n)
        if self._jitter <= 0.0:
            return base
        if self._next == len(self._factors):
            z = self._rng.standard_normal(JITTER_BLOCK)
            self._factors = np.maximum(MIN_JITTER_FACTOR, 1.0 + self._jitter * z).tolist()
            self._next = 0
        self._next += 1
        return base * self._factors[self._next - 1]

    def _latency(self, stage: str, n: int) -> float:
        st = self._stages[stage]
        share = 1.0 if self._plan.gpu_sharing == TEMPORAL else st.run_share
        return self._cost.latency_ms(st.model, st.start, st.end, n, share)


@dataclass
class Result:
    """Every request of a run, each in its terminal state; their metrics and outcome
    columns are computed when first read."""

    requests: list[Request]
    #: Events handled (arrivals included).
    events: int
    #: The instant of the last event.
    end_ms: float

    @cached_property
    def metrics(self) -> dict[str, Any]:
        """``summarize(requests)``."""
        return summarize(self.requests)

    @cached_property
    def outcomes(self) -> Outcomes:
        """``outcomes(requests)``: per-request masks and completion times."""
        return outcomes(self.requests)


def arrival_times_ms(flow: Flow, duration_s: float, rng: np.random.Generator,
                     arrivals: str) -> np.ndarray:
    """Arrival times in [0, duration) ms: Poisson at ``flow.rate``, or every ``1/rate`` s
    from a random phase."""
    return times_at_rate_ms(flow.rate, duration_s, rng, arrivals)


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
    count as late); every hand-off between consecutive stages takes the plan's hand-off time
    (``rules.handoff_ms`` over the slowest link between the two stages' replicas, for the
    batch that ended) plus ``forward_ms``.
    """
    if arrivals not in ARRIVALS:
        raise ValueError(f"arrivals must be one of {ARRIVALS}, got {arrivals!r}")
    if duration_s <= 0:
        raise ValueError("duration_s must be positive")
    arrival_seq, _ = np.random.SeedSequence(seed).spawn(2)
    requests = make_requests(workload, duration_s, np.random.default_rng(arrival_seq),
                             arrivals)
    columns = ArrivalColumns([r.arrival_ms for r in requests], [r.flow for r in requests],
                             [r.deadline_ms for r in requests], [r.model for r in requests],
                             [r.partition for r in requests])
    return simulate_requests(plan, columns, cost, seed=seed, jitter=jitter,
                             drop_late=drop_late, drain_cap_s=drain_cap_s,
                             forward_ms=forward_ms, horizon_ms=duration_s * 1000.0)


def simulate_requests(plan: Plan, arrivals: Sequence[ServerArrival] | ArrivalColumns,
                      cost: CostModel, *,
                      seed: int = 0, jitter: float = 0.0, drop_late: bool = False,
                      drain_cap_s: float = 60.0, forward_ms: float = 0.0,
                      horizon_ms: float | None = None) -> Result:
    """Serve ``arrivals`` (a list, or its ``ArrivalColumns``) with ``plan``; the request of
    ``arrivals[i]`` has id ``i``.

    Arrivals are taken in time order (ties in list order). The run stops at ``horizon_ms``
    (default: the last arrival) plus ``drain_cap_s``. Jitter draws come from the second
    child of ``SeedSequence(seed)``, as in ``simulate_plan``, so both give the same result
    on the same arrivals and seed. Other arguments as in ``simulate_plan``.
    """
    if jitter < 0 or drain_cap_s < 0 or forward_ms < 0:
        raise ValueError("jitter, drain_cap_s and forward_ms must be non-negative")
    cols = arrivals if isinstance(arrivals, ArrivalColumns) else ArrivalColumns.of(arrivals)
    requests = list(map(Request, range(len(cols)),
                        [f if f is not None else UNROUTED for f in cols.flow], cols.model,
                        cols.partition, cols.arrival_ms, cols.deadline_ms))
    times = np.asarray(cols.arrival_ms, dtype=float)
    unrouted = np.fromiter([f is None for f in cols.flow], bool, len(cols))
    for i in np.flatnonzero(unrouted).tolist():
        requests[i].state = RequestState.REJECTED
    order = np.argsort(times, kind="stable")
    order = order[~unrouted[order]]
    served = [requests[i] for i in order.tolist()]
    if horizon_ms is None:
        horizon_ms = float(times.max()) if len(cols) else 0.0
    end_ms = horizon_ms + drain_cap_s * 1000.0
    loop = EventLoop()
    batch_times = BatchTimes(plan, cost, jitter,
                             np.random.default_rng(np.random.SeedSequence(seed).spawn(2)[1]))
    state = ServerState(loop, _hops(plan, cost), batch_times.ms, drop_late=drop_late,
                        forward_ms=forward_ms)
    events = loop.run(times[order].tolist(), state.reach, served, until_ms=end_ms)
    unfinished = [r for r in requests if r.state is RequestState.ARRIVED]
    for r in unfinished:
        r.state = RequestState.DROPPED
    if unfinished:
        log.info("stopped at %.0f ms with %d requests unfinished (dropped)", end_ms,
                 len(unfinished))
    log.info("simulated %d requests, %d events", len(requests), events)
    return Result(requests=requests, events=events, end_ms=loop.now_ms)


def _hops(plan: Plan, cost: CostModel) -> dict[str, tuple[Hop, ...]]:
    """flow id -> its route's hops: (stage id, the executors serving it, and the hand-off
    to the next stage as fixed ms plus ms per request of the batch)."""
    executors, replicas = build_executors(plan)
    handoffs = route_handoffs(plan, cost)
    out: dict[str, tuple[Hop, ...]] = {}
    for r in plan.routes:
        out[r.flow] = tuple((s, [executors[k] for k in replicas[s]], fixed, per_request)
                            for s, (fixed, per_request) in zip(r.stages, handoffs[r.flow]))
    return out
