"""What the server observes of the requests reaching it: the flows a planner plans for, and
the share of requests any server could have on time.

``observed_workload``: the flows a planner should plan for, from the requests that reach the
server in a time window. Requests are grouped by (model, partition, budget class); the class
of a budget ``b`` for a fragment needing ``need`` (``needed_budget_ms``) is
``floor(log(b / need) / log(ratio))`` (geometric bins, ``ratio`` 1.5 by default: class 0 is
``[need, 1.5 need)``). A flow's rate is its count over the window; its budget is the 5th
percentile of its requests' budgets, so about 95% of them have at least the planned budget.
Requests whose budget is below ``need`` are counted as unservable, not planned for.
``attainment_ceiling``: the share of requests with a budget of at least ``need / 2`` (the
fastest their fragment runs), the most any planner can have on time.

A request here is anything with ``model``, ``partition``, ``arrival_ms`` and ``budget_ms``
(the simulator's ``ClientRequest``, or a request the runtime received).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from graft.cost.base import CostModel
from graft.plan.rules import needed_budget_ms
from graft.serving import metrics
from graft.workload.flows import Flow, Workload

log = logging.getLogger(__name__)

#: Width of a budget class: budgets within this factor of each other share a class.
BUDGET_CLASS_RATIO = 1.5
#: Percentile of a class's budgets that its flow is planned for.
BUDGET_PERCENTILE = 5.0


class Arriving(Protocol):
    """A request as the server sees it."""

    model: str
    partition: int
    arrival_ms: float
    budget_ms: float


@dataclass(frozen=True)
class Observation:
    """``observed_workload``'s answer: the flows to plan for, and requests left out."""

    workload: Workload
    #: Requests in the window whose budget is below their fragment's needed budget.
    unservable: int


def budget_class(budget_ms: float, need_ms: float, ratio: float = BUDGET_CLASS_RATIO) -> int:
    """``floor(log(budget / need) / log(ratio))``: 0 for ``[need, ratio * need)``, and so on
    (-1 and below for budgets under ``need``)."""
    return math.floor(math.log(budget_ms / need_ms) / math.log(ratio) + 1e-12) \
        if budget_ms > 0 else -1


def observed_workload(requests: Sequence[Arriving], cost: CostModel, *,
                      window_ms: tuple[float, float], ratio: float = BUDGET_CLASS_RATIO,
                      percentile: float = BUDGET_PERCENTILE) -> Observation:
    """The flows of the requests reaching the server in ``[start, end)`` ms of
    ``window_ms``: one per (model, partition, budget class), ids ``model/p<p>/b<class>``."""
    start, end = window_ms
    if not end > start:
        raise ValueError(f"window must have end > start, got {window_ms!r}")
    if not ratio > 1:
        raise ValueError(f"ratio must be > 1, got {ratio!r}")

    groups: dict[tuple[str, int, int], list[float]] = defaultdict(list)
    unservable = 0
    for r in requests:
        if not start <= r.arrival_ms < end:
            continue
        n = needed_budget_ms(cost, r.model, r.partition)  # cached in the cost model
        if r.budget_ms < n:
            unservable += 1
            continue
        groups[(r.model, r.partition, budget_class(r.budget_ms, n, ratio))].append(r.budget_ms)
    seconds = (end - start) / 1000.0
    flows = tuple(
        Flow(id=f"{m}/p{p}/b{k}", model=m, partition=p, rate=len(b) / seconds,
             budget_ms=max(float(np.percentile(b, percentile)), needed_budget_ms(cost, m, p)))
        for (m, p, k), b in sorted(groups.items()))
    log.info("observed %d flows from %d requests (%d unservable)", len(flows),
             sum(len(b) for b in groups.values()), unservable)
    return Observation(Workload(flows), unservable)


def below_fastest(requests: Sequence[Arriving], cost: CostModel) -> np.ndarray:
    """Per request, whether its server budget is below the fastest time its fragment
    ``[p, L)`` can run at any batch and share (half its ``needed_budget_ms``): the client
    left too little budget for any server (``graft.serving.metrics.below_fastest``)."""
    return metrics.below_fastest(cost, ((r.model, r.partition, r.budget_ms) for r in requests),
                                 len(requests))


def attainment_ceiling(requests: Sequence[Arriving], cost: CostModel,
                       below: np.ndarray | None = None) -> float:
    """The share of ``requests`` whose server budget is at least the fastest time their
    fragment ``[p, L)`` can run at any batch and share (``below_fastest`` is false; pass it
    as ``below`` when already computed): no plan can have the others on time, so no
    planner's SLO attainment exceeds this (1.0 when there are no requests)."""
    if not requests:
        return 1.0
    below = below_fastest(requests, cost) if below is None else below
    return int((~below).sum()) / len(requests)


