"""Time-shared slices: several low-rate stages take turns on one GPU slice.

A stage that must be fast (a tight budget) but sees little traffic holds a slice that sits
idle most of the time. Stages that time-share one slice of share ``g`` run one batch each
in turn, back to back: the slice's duty cycle ``d`` is the sum of their execution times at
``g``. A request waits at most one cycle for its stage's turn, then runs, so it spends at most
``d + e`` in the stage (``rules.stage_time_ms`` with a duty cycle: Nexus's rule, inside a
slice instead of a whole GPU), plus its batch's planned hand-off; a stage serving ``rate``
needs ``batch >= rules.batch_needed(rate, d)``. Each member reports ``share = g * e / d``, its
fraction of the slice, so the members' shares sum to ``g``.

``share_slices`` is a greedy post-pass in the spirit of Nexus's squishy bin packing: stages,
most expensive first, join the existing slice where merging saves the most share, while
every member stays within the time ``cap_ms`` its routes allow it.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

import numpy as np

from graft.cost.base import CostModel
from graft.plan import rules
from graft.planner.assemble import StageDraft
from graft.planner.configs import EPS, StageConfig

#: Most stages one slice takes turns between.
MAX_MEMBERS = 8
_FIXED_POINT_ROUNDS = 64


@dataclass
class _Slice:
    members: list[StageDraft]
    share: float
    duty_ms: float
    configs: list[StageConfig]


def _columns(cost: CostModel, d: StageDraft) -> np.ndarray:
    return np.asarray(cost.latency_grid(d.model, d.start, d.end))


def _handoffs(cost: CostModel, d: StageDraft) -> list[float]:
    """The stage's planned hand-off at every batch of the grid."""
    key = ("handoffs", d.model, d.end)
    hit = cost.cache.get(key)
    if hit is None:
        hit = cost.cache[key] = [float(rules.planned_handoff_ms(cost, d.model, d.end, b))
                                 for b in cost.batches]
    return hit


def _feasible(members: list[StageDraft], grids: list[np.ndarray], j: int, cost: CostModel
              ) -> tuple[float, list[StageConfig]] | None:
    """Duty cycle and member configurations at share index ``j``, or None.

    The cycle starts at the members' batch-1 times and grows to its least fixed point
    (every member runs the smallest grid batch carrying its rate in the cycle, the cycle is
    the sum of their times). Every step is a lower bound on any feasible cycle, so a member
    whose time already exceeds its cap ends the search at once."""
    batches = cost.batches
    share = cost.shares[j]
    col = [g[:, j].tolist() for g in grids]
    caps = [m.time_cap_ms * (1 + EPS) for m in members]
    handoffs = [_handoffs(cost, m) for m in members]
    idx = [0] * len(members)
    duty = sum(c[0] for c in col)
    for _ in range(_FIXED_POINT_ROUNDS):
        for i, m in enumerate(members):
            need = rules.batch_needed(m.rate, duty) * (1 - EPS)
            idx[i] = bisect.bisect_left(batches, need)
            if idx[i] >= len(batches):
                return None
        new = sum(c[k] for c, k in zip(col, idx))
        if any(rules.stage_time_ms(c[k], new) + h[k] > cap
               for c, k, h, cap in zip(col, idx, handoffs, caps)):
            return None  # the cycle and the batches only grow from here
        if new <= duty * (1 + EPS):
            duty = new
            break
        duty = new
    else:
        return None
    return duty, [StageConfig(batch=batches[k], share=share, replicas=1, exec_ms=c[k],
                              handoff_ms=h[k]) for c, k, h in zip(col, idx, handoffs)]


def solve_slice(members: list[StageDraft], cost: CostModel, at_least: float = 0.0,
                below: float = float("inf")) -> _Slice | None:
    """The least share on the grid, no smaller than ``at_least`` and less than ``below``, at
    which ``members`` can time-share one slice."""
    grids = [_columns(cost, m) for m in members]
    lo = bisect.bisect_left(cost.shares, at_least * (1 - EPS))
    hi = min(len(cost.shares), bisect.bisect_left(cost.shares, below * (1 - EPS))) - 1
    if hi < lo:
        return None
    best = _feasible(members, grids, hi, cost)
    if best is None:
        return None
    best_j = hi
    while lo < hi:  # feasibility grows with the share: binary search the least
        mid = (lo + hi) // 2
        got = _feasible(members, grids, mid, cost)
        if got is None:
            lo = mid + 1
        else:
            hi = best_j = mid
            best = got
    duty, configs = best
    return _Slice(list(members), cost.shares[best_j], duty, configs)


def share_slices(drafts: list[StageDraft], cost: CostModel) -> list[StageDraft]:
    """``drafts`` with low-rate stages merged into time-shared slices where that saves
    share; every route's time stays within its budget."""
    single = [d for d in drafts if d.config.replicas == 1]
    others = [d for d in drafts if d.config.replicas != 1]
    slices: list[_Slice] = []
    for d in sorted(single, key=lambda d: (-d.config.share, d.model, d.start, d.end)):
        best_gain, best_at, best_slice = EPS, -1, None
        for n, s in enumerate(slices):
            # a slice needs at least the share of each of its members alone (their cycle
            # only grows), so merging saves at most the smaller of the two shares
            if len(s.members) >= MAX_MEMBERS or min(s.share, d.config.share) <= best_gain:
                continue
            # only a slice smaller than both shares less the best gain so far improves on it
            trial = solve_slice([*s.members, d], cost, max(s.share, d.config.share),
                                below=s.share + d.config.share - best_gain)
            if trial is None:
                continue
            gain = s.share + d.config.share - trial.share
            if gain > best_gain:
                best_gain, best_at, best_slice = gain, n, trial
        if best_slice is not None:
            slices[best_at] = best_slice
        else:
            slices.append(_Slice([d], d.config.share, d.config.exec_ms, [d.config]))
    out = list(others)
    for key, s in enumerate(slices):
        if len(s.members) == 1:
            out.append(s.members[0])
            continue
        for m, c in zip(s.members, s.configs):
            out.append(replace(m, config=c, slice_key=key, duty_ms=s.duty_ms))
    return out
