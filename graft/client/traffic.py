"""Clients on bandwidth traces producing server arrivals (see ``docs/clients.md``).

``generate_requests``: each client sends requests at its rate (Poisson, or fixed intervals
from a seeded phase) over ``duration_s``. At send time ``t`` it

1. feeds its estimator the throughput its trace gave over the last second,
   ``trace.rate_mbps(t, 1000)`` (a passive probe: the sample does not depend on the client's
   own uploads, so clients that send rarely still track the link);
2. picks ``p`` with its policy (``choose_partition``; the server's predicted time and needed
   budget are both ``needed_budget_ms(cost, model, p)``);
3. runs the head, ``head = device.head_ms(model, p)``;
4. uploads ``upload_bytes(p)`` (the activation at ``activation_bytes_per_value`` bytes a value,
   or ``input_bytes`` at ``p = 0``; the same bytes the partition choice predicted with) by
   walking its trace from ``t + head`` (``upload = trace.transfer_ms(upload_bytes(p), t + head)``);
5. reaches the server at ``t + head + upload + rtt / 2`` with
   ``budget = slo - head - upload - download - rtt``,
   ``download = 8 * out_bytes(last block) / (downlink_mbps * 1e3)``.

A client's uploads do not share its link with each other (each walks the whole trace).
Each step runs for all of a client's send times at once (``rate_mbps_many``, the estimator's
``track``, ``choose_partitions``, ``transfer_ms_many``) and gives exactly the numbers of the
per-request calls above.

``observed_workload``: the flows a planner should plan for, from the requests that reach the
server in a time window. Requests are grouped by (model, partition, budget class); the class
of a budget ``b`` for a fragment needing ``need`` (``needed_budget_ms``) is
``floor(log(b / need) / log(ratio))`` (geometric bins, ``ratio`` 1.5 by default: class 0 is
``[need, 1.5 need)``). A flow's rate is its count over the window; its budget is the 5th
percentile of its requests' budgets, so about 95% of them have at least the planned budget.
Requests whose budget is below ``need`` are counted as unservable, not planned for.
``attainment_ceiling``: the share of requests with a budget of at least ``need / 2`` (the
fastest their fragment runs), the most any planner can have on time.

``route_requests``: a request takes the route of the planned flow of its (model, partition)
with the largest budget not above its own (else the tightest such flow; it may be late); with
no routed flow of its (model, partition) it is rejected. Its deadline is its own budget.
Admission control: a request whose budget is below its route's least latency (the sum of
its stages' ``exec_ms`` and hand-offs, ``Plan.least_latency_ms``) cannot be on time even on
idle stages, so it is rejected at once instead of taking capacity from requests that can
still make it.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from graft.client.devices import get_device
from graft.client.estimator import BandwidthEstimator, EwmaEstimator, HarmonicEstimator
from graft.client.partition import (
    DEFAULT_DOWNLINK_MBPS,
    FP32_BYTES,
    check_upload_sizes,
    choose_partitions,
    result_bytes,
    transfer_ms,
    upload_bytes_all,
)
from graft.cost.base import CostModel
from graft.models.catalog import get_model
from graft.plan.plan import Plan
from graft.plan.rules import fastest_ms, needed_budget_ms
from graft.sim.server import ArrivalColumns, ServerArrival, times_at_rate_ms
from graft.workload.flows import Flow, Workload
from graft.workload.traces import BandwidthTrace

log = logging.getLogger(__name__)

#: Estimators by name.
ESTIMATORS: dict[str, Callable[[], BandwidthEstimator]] = {
    "ewma": EwmaEstimator,
    "harmonic": HarmonicEstimator,
}

#: Window of the trace throughput a client samples before each request, ms.
SAMPLE_WINDOW_MS = 1000.0
#: Width of a budget class: budgets within this factor of each other share a class.
BUDGET_CLASS_RATIO = 1.5
#: Percentile of a class's budgets that its flow is planned for.
BUDGET_PERCENTILE = 5.0


#: A client's defaults, shared by ``ClientSpec`` and the scenario format.
DEFAULT_ARRIVALS = "poisson"
DEFAULT_POLICY = "neurosurgeon"
DEFAULT_RTT_MS = 20.0
DEFAULT_ESTIMATOR = "ewma"


@dataclass(frozen=True)
class ClientSpec:
    """One client: its model, device, SLO, request rate, link and partition policy."""

    id: str
    model: str
    device: str
    slo_ms: float
    rate: float
    trace: BandwidthTrace = field(compare=False)
    arrivals: str = DEFAULT_ARRIVALS
    policy: str = DEFAULT_POLICY
    #: The point of the ``fixed`` policy.
    partition: int | None = None
    rtt_ms: float = DEFAULT_RTT_MS
    downlink_mbps: float = DEFAULT_DOWNLINK_MBPS
    estimator: str = DEFAULT_ESTIMATOR
    #: Bytes a value of the uploaded activation (p > 0): 4 = fp32, 1 = int8-quantised.
    activation_bytes_per_value: float = FP32_BYTES
    #: Bytes uploaded at p = 0 (e.g. a JPEG of the frame); None = the raw fp32 input tensor.
    input_bytes: float | None = None

    def __post_init__(self) -> None:
        check_upload_sizes(self.activation_bytes_per_value, self.input_bytes)


@dataclass(frozen=True)
class ClientRequest:
    """One request of one client, from send time to server arrival (ms)."""

    client: str
    model: str
    partition: int
    send_ms: float
    arrival_ms: float
    #: Server budget: slo - head - upload - download - rtt.
    budget_ms: float
    head_ms: float
    upload_ms: float
    estimate_mbps: float

    @property
    def viable(self) -> bool:
        """Whether the request can still make its SLO at all (budget > 0)."""
        return self.budget_ms > 0


#: ``ClientRequest``'s fields after ``client`` and ``model``, in order: the per-request arrays.
_COLUMNS = tuple(f.name for f in fields(ClientRequest))[2:]


@dataclass(frozen=True)
class Observation:
    """``observed_workload``'s answer: the flows to plan for, and requests left out."""

    workload: Workload
    #: Requests in the window whose budget is below their fragment's needed budget.
    unservable: int


def _needed(cost: CostModel) -> Callable[[str, int], float]:
    cache: dict[tuple[str, int], float] = {}

    def need(model: str, p: int) -> float:
        if (model, p) not in cache:
            cache[(model, p)] = needed_budget_ms(cost, model, p)
        return cache[(model, p)]

    return need


def _make_estimator(name: str) -> BandwidthEstimator:
    """A fresh estimator of the kind named (``ESTIMATORS``); ValueError for others."""
    try:
        return ESTIMATORS[name]()
    except KeyError:
        raise ValueError(f"estimator must be one of {list(ESTIMATORS)}, got {name!r}") from None


def _client_columns(c: ClientSpec, need: Callable[[str, int], float], duration_s: float,
                    rng: np.random.Generator) -> dict[str, np.ndarray] | None:
    """The client's requests as one array per field of ``_COLUMNS``, in send order (steps
    1-5 of the module docstring, each for all its send times at once); None when it sends
    nothing."""
    spec = get_model(c.model)
    device = get_device(c.device)
    est = _make_estimator(c.estimator)
    download = transfer_ms(result_bytes(spec), c.downlink_mbps)
    send = times_at_rate_ms(c.rate, duration_s, rng, c.arrivals)
    if not send.size:
        return None
    bw = est.track(c.trace.rate_mbps_many(send, SAMPLE_WINDOW_MS))
    p = choose_partitions(c.policy, spec, device, bw, c.slo_ms, c.rtt_ms, need,
                          partition=c.partition, downlink_mbps=c.downlink_mbps,
                          activation_bytes_per_value=c.activation_bytes_per_value,
                          input_bytes=c.input_bytes)
    head = np.asarray(device.head_ms_all(spec))[p]
    sent = upload_bytes_all(spec, activation_bytes_per_value=c.activation_bytes_per_value,
                            input_bytes=c.input_bytes)[p]
    upload = c.trace.transfer_ms_many(sent, send + head)
    return {"partition": p, "send_ms": send,
            "arrival_ms": send + head + upload + c.rtt_ms / 2.0,
            "budget_ms": c.slo_ms - head - upload - download - c.rtt_ms,
            "head_ms": head, "upload_ms": upload, "estimate_mbps": bw}


def _requests(clients: Sequence[ClientSpec], owner: np.ndarray,
              columns: dict[str, np.ndarray]) -> list[ClientRequest]:
    """One ``ClientRequest`` per entry: client ``owner[i]``, fields from ``columns``."""
    ids = [c.id for c in clients]
    models = [c.model for c in clients]
    rows = zip(owner.tolist(), *(columns[f].tolist() for f in _COLUMNS), strict=True)
    return [ClientRequest(ids[k], models[k], *values) for k, *values in rows]


def generate_requests(clients: Sequence[ClientSpec], cost: CostModel, *, duration_s: float,
                      seed: int = 0) -> list[ClientRequest]:
    """Every client's requests over ``duration_s``, ordered by server arrival (ties by client
    order, then send time); deterministic for a seed (client ``i`` draws from child ``i`` of
    ``SeedSequence(seed)``)."""
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s!r}")
    ids = [c.id for c in clients]
    if len(set(ids)) != len(ids):
        raise ValueError("client ids must be unique")
    need = _needed(cost)
    seqs = np.random.SeedSequence(seed).spawn(len(clients))
    parts, owners = [], []
    for k, (c, sq) in enumerate(zip(clients, seqs, strict=True)):
        cols = _client_columns(c, need, duration_s, np.random.default_rng(sq))
        n = 0 if cols is None else cols["send_ms"].size
        log.debug("client %s: %d requests", c.id, n)
        if cols is not None:
            parts.append(cols)
            owners.append(np.full(n, k))
    if not parts:
        return []
    columns = {f: np.concatenate([cols[f] for cols in parts]) for f in _COLUMNS}
    owner = np.concatenate(owners)
    order = np.lexsort((columns["send_ms"], owner, columns["arrival_ms"]))
    return _requests(clients, owner[order], {f: v[order] for f, v in columns.items()})


def budget_class(budget_ms: float, need_ms: float, ratio: float = BUDGET_CLASS_RATIO) -> int:
    """``floor(log(budget / need) / log(ratio))``: 0 for ``[need, ratio * need)``, and so on
    (-1 and below for budgets under ``need``)."""
    return math.floor(math.log(budget_ms / need_ms) / math.log(ratio) + 1e-12) \
        if budget_ms > 0 else -1


def observed_workload(requests: Sequence[ClientRequest], cost: CostModel, *,
                      window_ms: tuple[float, float], ratio: float = BUDGET_CLASS_RATIO,
                      percentile: float = BUDGET_PERCENTILE) -> Observation:
    """The flows of the requests reaching the server in ``[start, end)`` ms of
    ``window_ms``: one per (model, partition, budget class), ids ``model/p<p>/b<class>``."""
    start, end = window_ms
    if not end > start:
        raise ValueError(f"window must have end > start, got {window_ms!r}")
    if not ratio > 1:
        raise ValueError(f"ratio must be > 1, got {ratio!r}")
    need = _needed(cost)
    groups: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    unservable = 0
    for r in requests:
        if not start <= r.arrival_ms < end:
            continue
        n = need(r.model, r.partition)
        if r.budget_ms < n:
            unservable += 1
            continue
        groups[(r.model, r.partition, budget_class(r.budget_ms, n, ratio))].append(r.budget_ms)
    seconds = (end - start) / 1000.0
    flows = tuple(
        Flow(id=f"{m}/p{p}/b{k}", model=m, partition=p, rate=len(b) / seconds,
             budget_ms=max(float(np.percentile(b, percentile)), need(m, p)))
        for (m, p, k), b in sorted(groups.items()))
    log.info("observed %d flows from %d requests (%d unservable)", len(flows),
             sum(len(b) for b in groups.values()), unservable)
    return Observation(Workload(flows), unservable)


def attainment_ceiling(requests: Sequence[ClientRequest], cost: CostModel) -> float:
    """The share of ``requests`` whose server budget is at least the fastest time their
    fragment ``[p, L)`` can run at any batch and share (half its ``needed_budget_ms``): no
    plan can have the others on time, so no planner's SLO attainment exceeds this (1.0 when
    there are no requests)."""
    if not requests:
        return 1.0
    ok = sum(r.budget_ms >= fastest_ms(cost, r.model, r.partition, get_model(r.model).num_blocks)
             for r in requests)
    return ok / len(requests)


def route_columns(requests: Sequence[ClientRequest], plan: Plan,
                  workload: Workload, cost: CostModel) -> ArrivalColumns:
    """``route_requests`` as columns (``simulate_requests`` reads either)."""
    least = plan.least_latency_ms(cost)
    by_fragment: dict[tuple[str, int], list[Flow]] = defaultdict(list)
    for f in workload.flows:
        if f.id in least:
            by_fragment[(f.model, f.partition)].append(f)
    n = len(requests)
    arrival = np.fromiter([r.arrival_ms for r in requests], float, n)
    budget = np.fromiter([r.budget_ms for r in requests], float, n)
    models, parts = [r.model for r in requests], [r.partition for r in requests]
    codes = {key: c for c, key in enumerate(by_fragment)}
    fragment = np.fromiter([codes.get(k, -1) for k in zip(models, parts)], np.intp, n)
    flow = np.full(n, None, dtype=object)
    for key, c in codes.items():
        fl = sorted(by_fragment[key], key=lambda f: (f.budget_ms, f.id))
        at = np.flatnonzero(fragment == c)
        # the largest budget not above the request's (the last such), else the tightest
        pick = np.maximum(np.searchsorted([f.budget_ms for f in fl], budget[at],
                                          side="right") - 1, 0)
        # admission: a request that cannot finish in time even on idle stages is rejected
        floor = np.array([least[f.id] for f in fl])[pick]
        flow[at] = np.where(budget[at] >= floor, np.array([f.id for f in fl], dtype=object)[pick],
                            None)
    return ArrivalColumns(arrival.tolist(), flow.tolist(), (arrival + budget).tolist(), models,
                          parts)


def route_requests(requests: Sequence[ClientRequest], plan: Plan,
                   workload: Workload, cost: CostModel) -> list[ServerArrival]:
    """One ``ServerArrival`` per request (same order, ``tag`` = the request): the route of
    the routed flow of its (model, partition) with the largest budget not above its own, else
    the tightest such flow; None (rejected) when its (model, partition) has no routed flow,
    or when its budget is below that route's least latency under ``cost`` (it cannot be on
    time)."""
    c = route_columns(requests, plan, workload, cost)
    return [ServerArrival(arrival, flow, deadline, model, p, tag=r)
            for arrival, flow, deadline, model, p, r in zip(
                c.arrival_ms, c.flow, c.deadline_ms, c.model, c.partition, requests,
                strict=True)]
