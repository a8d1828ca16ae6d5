"""Slack reclamation: hand the budget the dynamic program left unused back to stages.

The re-alignment DP rounds every trunk stage's time down to its budget grid and, among
equally cheap splits, may leave a route well inside its budget. Two greedy passes over the
stages, most expensive first, spend each route's slack (its budget minus the planned time of
its stages, hand-offs included):

1. re-pick each stage's cheapest configuration with the slack of its tightest route added
   to its time, when that is cheaper;
2. raise each stage's time cap (``StageDraft.cap_ms``) by an even part of what its routes
   still have left, so that ``timeshare`` can fit it into a slice's duty cycle.

No route ever exceeds its budget: a stage only takes slack that every route through it has.
"""

from __future__ import annotations

from dataclasses import replace

from graft.cost.base import CostModel
from graft.planner.assemble import StageDraft
from graft.planner.configs import EPS, segment_options


def _slack(drafts: list[StageDraft], times: list[float]) -> dict[str, float]:
    used: dict[str, float] = {}
    budget: dict[str, float] = {}
    for d, t in zip(drafts, times):
        for f in d.flows:
            used[f.id] = used.get(f.id, 0.0) + t
            budget[f.id] = f.budget_ms
    return {fid: budget[fid] - used[fid] for fid in used}


def reclaim_slack(drafts: list[StageDraft], cost: CostModel) -> list[StageDraft]:
    out = list(drafts)
    times = [d.config.time_ms for d in out]
    slack = _slack(out, times)
    order = sorted(range(len(out)), key=lambda i: -out[i].config.cost)
    for i in order:  # pass 1: cheaper configurations within the slack
        d = out[i]
        extra = min(slack[f.id] for f in d.flows)
        if extra <= EPS:
            continue
        better = segment_options(cost, d.model, d.start, d.end).cheapest(
            d.rate, times[i] + extra)
        if better is not None and better.cost < d.config.cost - EPS:
            grown = better.time_ms - times[i]
            for f in d.flows:
                slack[f.id] -= grown
            times[i] = better.time_ms
            out[i] = replace(d, config=better)
    left: dict[str, int] = {}  # stages on each route not yet given room
    for d in out:
        for f in d.flows:
            left[f.id] = left.get(f.id, 0) + 1
    for i in order:  # pass 2: what is left, shared evenly along each route, becomes room
        d = out[i]
        extra = max(0.0, min(slack[f.id] / left[f.id] for f in d.flows))
        for f in d.flows:
            slack[f.id] -= extra
            left[f.id] -= 1
        out[i] = replace(d, cap_ms=times[i] + extra)
    return out
