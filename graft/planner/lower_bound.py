"""Lower bounds on a plan's total share.

``lower_bound_share``, the bound every plan reports: for every block of every model, the
total request rate that passes through it times the least GPU-seconds per request that
block can cost at any batch and share (``min share * latency / batch``), summed. No plan
that runs every block of every request can use less GPU than this, up to the fixed
per-stage overhead a cost model charges once per stage (which the bound counts once per
block). It ignores latency: a flow with a tight budget needs a fast stage however little
traffic it has.

``latency_floor_share`` counts that: some stage of every spatial plan runs at least at the
share the tightest flow's fragment needs to fit half its budget. ``share_floor`` is the
larger of the two.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

import numpy as np

from graft.cost.base import CostModel
from graft.models.catalog import get_model
from graft.plan.rules import EPS, stage_time_ms
from graft.planner.configs import segment_options
from graft.workload.flows import Flow


def lower_bound_share(flows: Iterable[Flow], cost: CostModel) -> float:
    rate_from: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for f in flows:
        rate_from[f.model][f.partition] += f.rate
    total = 0.0
    for model, by_p in rate_from.items():
        rate = 0.0
        for block in range(get_model(model).num_blocks):
            rate += by_p.get(block, 0.0)
            if rate > 0:
                total += rate * segment_options(cost, model, block, block + 1).min_share_seconds
    return total


def latency_floor_share(flows: Iterable[Flow], cost: CostModel) -> float:
    """The least share some stage of a spatial plan must run at, whatever the plan: the
    largest, over ``flows``, of the least grid share at which the flow's whole fragment
    ``[p, L)`` runs in half its budget at its best batch (0.0 with no flows; ``inf`` if a
    flow cannot be served at all).

    Why it bounds every spatial plan: a request spends ``2 e`` in a stage (``d + e``, with
    ``d >= e``, in a time-shared slice) and a hand-off takes no negative time, so the
    execution times of a route's stages sum to at most half the flow's budget. A stage is no
    faster at a smaller share, and a fragment split into stages is no faster than in one
    stage (the cost models add their blocks' times plus a per-stage overhead, and the
    analytic and profiled ones are fastest at batch 1). So if every stage of the route ran
    below that share, the route would take over half the budget. The stage, or the slice it
    takes turns on, holds at least that share of one GPU. Whole-GPU time slicing (temporal
    plans) runs every stage at full speed: this does not bound them.
    """
    tightest: dict[tuple[str, int], float] = {}  # per fragment, its least budget
    for f in flows:
        key = (f.model, f.partition)
        tightest[key] = min(f.budget_ms, tightest.get(key, math.inf))
    shares = np.asarray(cost.shares, dtype=float)
    floor = 0.0
    for (model, p), budget in tightest.items():
        end = get_model(model).num_blocks
        fastest = np.min(np.asarray(cost.latency_grid(model, p, end)), axis=0)
        ok = np.flatnonzero(stage_time_ms(fastest) <= budget * (1 + EPS))
        floor = max(floor, float(shares[ok[0]]) if ok.size else math.inf)
    return floor


def share_floor(flows: Iterable[Flow], cost: CostModel) -> float:
    """The larger of ``lower_bound_share`` and ``latency_floor_share``: no spatial plan of
    ``flows`` has a smaller total share."""
    flows = list(flows)
    return max(lower_bound_share(flows, cost), latency_floor_share(flows, cost))
