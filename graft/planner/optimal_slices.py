"""Time-shared slices in the ``optimal`` MILP (``graft.planner.optimal``).

A time-shared slice (``graft.planner.timeshare``, ``graft.plan.rules``) is one process at
share ``g`` whose members, single-replica stages on segments of the models, take turns: its
duty cycle ``D`` is the sum of their execution times ``e(s, B, g)``; a request spends
``D + e`` in a member, plus its batch's planned hand-off; a member carrying ``R`` req/s
needs ``R * D <= 1000 * B``; the slice costs ``g``. This module adds up to ``instances`` such
slices of 2 to ``max_members`` members each to the MILP, exactly: every solution is a plan
that keeps these rules, and every plan with at most that many slices is a solution, except
that a slice holds each (segment, batch) once (twice where a start plan has two such
members, so every start plan stays a feasible point). A one-member slice is the 2e stage of
the same batch and share, which the MILP has already.

**Columns** (slice instance ``i``, candidate share ``g``, candidate member ``m = (segment s,
batch B)``, commodity ``c``):

- ``sigma[i, g]`` binary: slice ``i`` runs at share ``g`` (at most one; cost ``g``);
- ``v[i, m]`` binary: ``m`` is a member of slice ``i``; ``u[i, m, g]`` (continuous): the
  member at share ``g``, with ``sum_g u = v`` and ``u <= sigma[i, g]`` (so ``u`` is binary
  where ``v`` and ``sigma`` are);
- ``D[i, g] >= sum_m e(m, g) u[i, m, g]``, ``D[i, g] <= Dmax_g sigma[i, g]``: the duty
  cycle, if the slice runs at ``g`` (0 otherwise);
- ``y[c, i, m]`` binary: c's route passes ``m`` (an arc of its path, like ``x``), with
  ``y <= v``, ``v <= sum_c y`` (a member serves someone); ``yg[c, i, m, g]`` (continuous):
  ``sum_g yg = y``, ``yg <= u``;
- ``t[c, i, m] >= sum_g (D[i, g] - Dmax_g (sigma[i, g] - yg[c, i, m, g]) + e(m, g) yg)``:
  ``D + e`` where c passes ``m`` (every other share's term is at most 0); the latency row
  adds ``t + handoff(B) y``;
- ``q[c, i, m] >= sum_g (D[i, g] - Dmax_g (sigma[i, g] - yg[c, i, m, g]))``, so
  ``q = D y``: the capacity row ``sum_c rate_c q[c, i, m] <= 1000 B`` is ``R * D <= 1000 B``.

Every lower bound is tight at an optimum (a larger ``D``, ``t`` or ``q`` only makes rows
harder), so the MILP's times and capacities are the rules' own; the planner rebuilds the
slices from the binary decisions and checks them against the rules again.

**Valid rows that tighten the relaxation** (each holds for every plan, or for one no worse):

- each member's part of the slice, ``p[i, m] = g e / D``, is at least ``g e R / (1000 B)``
  (capacity) and ``g e / (slack_c - e - handoff)`` for each c through it (latency), and the
  parts sum to at most the slice's share;
- a member bounds the duty cycle: ``D <= dcap_m(g)``, the most any of its users allows
  (``slack_c - e - handoff`` and ``1000 B / rate_c``);
- no worse than solo: the share is at most the sum of the members' ``solo`` bounds (the most
  a 2e stage replacing one can cost: the cheapest option within ``2 e + e_lo + handoff`` at
  the most it can carry, ``min(1000 B / (e + e_lo), its users' rates)``); a slice costing
  more is replaced by those stages at no more cost (a start plan's shares are exempt);
- ``t >= (2 e + e_lo) y`` and ``q >= (e + e_lo) y`` at the slice's share; 2 to
  ``max_members`` members per used slice; shares non-increasing in ``i`` (symmetry).

**Exact pruning.** ``e_lo(g)`` is the least execution time of any candidate segment at share
``g`` (every slice has a second member, so ``D >= e + e_lo``).

- A share ``g`` above the cheapest start plan's total share cannot be in an optimal plan.
- Commodity c may pass ``m`` at ``g`` only if ``2 e + e_lo + handoff <= slack`` (its budget
  less the fastest way to reach the segment and to finish after it) and
  ``rate_c (e + e_lo) <= 1000 B``.
- A member may take batch ``B`` at ``g`` only if ``B`` is the least batch that carries its
  traffic for some duty cycle of the others: a smaller batch (no slower, where the cost model
  is monotone in batch) makes every member's time and every capacity no worse. So for some
  subset of the commodities that may use the segment (rate sum ``R``, least slack ``S``)
  there is a duty cycle of the others ``D_o >= e_lo`` with ``R (D_o + e) <= 1000 B``,
  ``D_o + 2 e + handoff <= S`` and ``R (D_o + e(B')) > 1000 B'`` for every smaller ``B'``.
- Member ``m`` may run at ``g`` only if its ``solo`` bound plus the ``max_members - 1``
  largest other ``solo`` bounds at ``g`` reach ``g`` (else no slice holding it passes the
  no-worse-than-solo row).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import numpy as np

from graft.cost.base import CostModel
from graft.plan import rules
from graft.plan.plan import Plan
from graft.planner.assemble import StageDraft
from graft.planner.configs import EPS, StageConfig, segment_options

#: Tolerance (ms) on the pruning tests: keeping a borderline candidate is always safe.
_SLACK_MS = 1e-6


@dataclass
class Member:
    """A candidate slice member: a segment at one batch (``copy`` > 0 for a second one)."""

    segment: int
    batch: int
    handoff_ms: float
    #: execution time at each candidate share of the space (all of them, used or not)
    exec_ms: np.ndarray
    #: positions (in the space's shares) of the shares at which it may run
    at: np.ndarray
    copy: int = 0
    #: per share: most a solo 2e stage replacing it can cost (``_bound_member``)
    solo: np.ndarray | None = None
    #: per share: longest duty cycle a slice holding it may have (``_bound_member``)
    d_cap: np.ndarray | None = None


@dataclass
class SliceSpace:
    """The candidate shares and members, and where each commodity may pass each member."""

    shares: np.ndarray
    members: list[Member]
    #: (commodity, member) -> positions of the shares at which c may pass it
    users: dict[tuple[int, int], np.ndarray]
    instances: int
    max_members: int
    #: upper bound on a duty cycle (ms)
    d_max: float
    #: per share: upper bound on the duty cycle of a slice at that share
    d_max_at: np.ndarray
    #: positions of shares exempt from the no-worse-than-solo row (a known plan's slices)
    exempt: set[int]
    #: least execution time of any candidate segment, per share
    e_lo: np.ndarray
    #: (commodity, segment) -> most time a stage on the segment may take on c's route
    slack: dict[tuple[int, int], float]


@dataclass
class SliceCols:
    """Columns of the slice part of the MILP."""

    space: SliceSpace
    sigma: dict[tuple[int, int], int] = field(default_factory=dict)
    v: dict[tuple[int, int], int] = field(default_factory=dict)
    #: (i, member, share position) -> u: the member at that share
    u: dict[tuple[int, int, int], int] = field(default_factory=dict)
    #: (i, member) -> p: the member's part of the slice's share
    p: dict[tuple[int, int], int] = field(default_factory=dict)
    #: (i, share position) -> the duty cycle of slice i if it runs at that share
    d: dict[tuple[int, int], int] = field(default_factory=dict)
    y: dict[tuple[int, int, int], int] = field(default_factory=dict)
    #: (c, i, member, share position) -> yg: c passes the member at that share
    yg: dict[tuple[int, int, int, int], int] = field(default_factory=dict)
    t: dict[tuple[int, int, int], int] = field(default_factory=dict)
    q: dict[tuple[int, int, int], int] = field(default_factory=dict)


@dataclass(frozen=True)
class PlannedMember:
    """A member of a slice of a known plan, in the MILP's terms."""

    segment: int
    batch: int
    share: float
    commodities: tuple[int, ...]


# --- candidates -----------------------------------------------------------------------------

def slice_space(commodities: list, segments: list, reach: dict, cost: CostModel, *,
                upper_share: float, instances: int, max_members: int,
                planned: list[list[PlannedMember]] = ()) -> SliceSpace | None:
    """The pruned candidates (module docstring), plus every member of ``planned`` slices (a
    known plan's, so that it stays a feasible point). None when no slice can help."""
    grid_shares = np.asarray(cost.shares, dtype=float)
    keep = grid_shares <= upper_share * (1 + 1e-9)
    keep |= np.isin(np.round(grid_shares, 9), [round(m.share, 9) for s in planned for m in s])
    share_idx = np.flatnonzero(keep)
    if len(share_idx) == 0 or instances <= 0:
        return None
    shares = grid_shares[share_idx]
    grids = [np.asarray(cost.latency_grid(s.model, s.start, s.end), dtype=float)[:, share_idx]
             for s in segments]
    e_lo = np.min([g[0] for g in grids], axis=0) if grids else np.zeros(len(shares))
    slack = np.array([[reach[s.model].slack(c, s.start, s.end) if s.model == c.model
                       else -math.inf for s in segments] for c in commodities])
    rates = np.array([c.rate for c in commodities])
    members, users = _candidates(segments, grids, e_lo, rates, slack, cost)
    _force_planned(members, users, planned, shares, grids, segments, cost)
    exempt = {int(np.argmin(np.abs(shares - pm.share))) for group in planned for pm in group}
    for mi, m in enumerate(members):
        _bound_member(m, mi, segments[m.segment], users, e_lo, rates, slack[:, m.segment],
                      shares, cost)
    _drop_useless_shares(members, users, shares, max_members, exempt)
    members, users = _compact(members, users)
    if not members:
        return None
    d_max_at = np.zeros(len(shares))
    for m in members:
        d_max_at[m.at] = np.maximum(d_max_at[m.at], m.d_cap[m.at])
    slack_of = {(ci, si): float(slack[ci, si]) for ci in range(len(commodities))
                for si in range(len(segments)) if slack[ci, si] >= 0}
    return SliceSpace(shares, members, users, instances, max_members,
                      float(d_max_at.max()), d_max_at, exempt, e_lo, slack_of)


def _candidates(segments: list, grids: list[np.ndarray], e_lo: np.ndarray,
                rates: np.ndarray, slack: np.ndarray, cost: CostModel
                ) -> tuple[list[Member], dict[tuple[int, int], np.ndarray]]:
    """Every (segment, batch) some commodity may pass in a slice, with the shares at which
    each commodity may (keyed by (commodity, member position))."""
    batches = np.asarray(cost.batches, dtype=float)
    members: list[Member] = []
    users: dict[tuple[int, int], np.ndarray] = {}
    for si, seg in enumerate(segments):
        handoff = np.asarray(rules.planned_handoff_ms(cost, seg.model, seg.end, batches))
        useful = _useful_batches(grids[si], batches, handoff, e_lo, rates, slack[:, si])
        for bi in range(len(batches)):
            _add_member(members, users, Member(si, int(batches[bi]), float(handoff[bi]),
                                               grids[si][bi], np.flatnonzero(useful[bi])),
                        e_lo, rates, slack[:, si])
    return members, users


def _bound_member(m: Member, mi: int, seg, users: dict, e_lo: np.ndarray, rates: np.ndarray,
                  slack: np.ndarray, shares: np.ndarray, cost: CostModel) -> None:
    """Fill ``m.solo`` and ``m.d_cap`` at the shares where it may run.

    ``solo``: in any slice at share g the member carries at most ``R = min(1000 B / (e +
    e_lo), its users' rates)`` and its requests spend at least ``2 e + e_lo + handoff`` in
    it, so a 2e stage of the cheapest option within that time at rate R could replace it (at
    most g: its own option alone). ``d_cap``: a user c passes it only if ``D + e + handoff <=
    slack_c`` and ``rate_c D <= 1000 B``, so the slice's duty cycle is at most the largest of
    those bounds over its users.
    """
    opts = segment_options(cost, seg.model, seg.start, seg.end)
    mine = {ci: at for (ci, mj), at in users.items() if mj == mi}
    m.solo = np.zeros(len(shares))
    m.d_cap = np.zeros(len(shares))
    for g in m.at:
        e = float(m.exec_ms[g])
        us = [ci for ci, at in mine.items() if g in at]
        if not us:
            continue
        rate = min(rules.longest_period_ms(m.batch, e + e_lo[g]), float(rates[us].sum()))
        best = opts.cheapest(rate, rules.stage_time_ms(e, e + e_lo[g]) + m.handoff_ms)
        m.solo[g] = min(shares[g], best.cost if best is not None else math.inf)
        m.d_cap[g] = max(min(slack[ci] - e - m.handoff_ms,
                             rules.longest_period_ms(m.batch, rates[ci]))
                         for ci in us)


def _drop_useless_shares(members: list[Member], users: dict, shares: np.ndarray,
                         max_members: int, exempt: set[int]) -> None:
    """Drop member m at share g when no slice at g holding m can beat its members' solo 2e
    stages: ``solo_m(g)`` plus the ``max_members - 1`` largest other ``solo`` bounds at g
    sum to less than g (shares in ``exempt`` stay)."""
    drop: dict[int, set[int]] = defaultdict(set)
    for g in range(len(shares)):
        if g in exempt:
            continue
        here = [(float(m.solo[g]), mi) for mi, m in enumerate(members) if g in m.at]
        here.sort(reverse=True)
        top = [x for x, _ in here[:max_members]]
        for rank, (x, mi) in enumerate(here):
            others = sum(top) - (x if rank < max_members else top[-1])
            if x + others < shares[g] * (1 - 1e-9):
                drop[mi].add(g)
    for mi, gs in drop.items():
        members[mi].at = np.array([g for g in members[mi].at if g not in gs], dtype=int)
    for (ci, mi), at in list(users.items()):
        kept = np.array([g for g in at if g not in drop.get(mi, ())], dtype=int)
        if len(kept):
            users[(ci, mi)] = kept
        else:
            del users[(ci, mi)]


def _compact(members: list[Member], users: dict
             ) -> tuple[list[Member], dict[tuple[int, int], np.ndarray]]:
    """The members left with a share to run at, and ``users`` renumbered to match."""
    pos = {}
    for mi, m in enumerate(members):
        if len(m.at) and any(key[1] == mi for key in users):
            pos[mi] = len(pos)
    return ([members[mi] for mi in pos],
            {(ci, pos[mi]): at for (ci, mi), at in users.items() if mi in pos})


def _useful_batches(grid: np.ndarray, batches: np.ndarray, handoff: np.ndarray,
                    e_lo: np.ndarray, rates: np.ndarray, slack: np.ndarray) -> np.ndarray:
    """Mask (batch x share) of the batches a member on this segment may need at each share:
    the least batch that carries some subset of its commodities (module docstring)."""
    can = slack >= 0
    out = np.zeros(grid.shape, dtype=bool)
    if not can.any():
        return out
    sums, least = _rate_slack_pairs(rates[can], slack[can])
    monotone = bool(np.all(np.diff(grid, axis=0) >= 0))
    r = sums[:, None]
    below = np.full((len(sums), grid.shape[1]), -np.inf)  # max over smaller batches
    for bi, b in enumerate(batches):
        e = grid[bi][None, :]
        hi = np.minimum(rules.longest_period_ms(b, r) - e,
                        least[:, None] - rules.stage_time_ms(e) - handoff[bi])
        lo = np.maximum(e_lo[None, :], below if monotone else -np.inf)
        out[bi] = np.any(lo <= hi + _SLACK_MS, axis=0)
        below = np.maximum(below, rules.longest_period_ms(b, r) - e)
    return out


def _rate_slack_pairs(rates: np.ndarray, slack: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Over every non-empty subset of commodities: its rate sum and least slack; per distinct
    rate sum, the largest least slack."""
    sums = np.zeros(0)
    least = np.zeros(0)
    for c in np.argsort(-slack, kind="stable"):  # c has the least slack of subsets ending at c
        new = np.concatenate(([0.0], sums)) + rates[c]
        sums = np.concatenate((sums, new))
        least = np.concatenate((least, np.full(len(new), slack[c])))
    order = np.lexsort((-least, np.round(sums, 9)))
    sums, least = sums[order], least[order]
    first = np.concatenate(([True], np.diff(np.round(sums, 9)) > 0))
    return sums[first], least[first]


def _passable(m: Member, e_lo: np.ndarray, rate: float, slack: float) -> np.ndarray:
    """Mask of the shares at which a commodity (``rate``, ``slack`` on the segment) may
    pass member ``m``."""
    e = m.exec_ms
    return ((rules.stage_time_ms(e, e + e_lo) + m.handoff_ms <= slack + _SLACK_MS)
            & (rules.batch_needed(rate, e + e_lo) <= m.batch * (1 + EPS)))


def _add_member(members: list[Member], users: dict, m: Member, e_lo: np.ndarray,
                rates: np.ndarray, slack: np.ndarray) -> None:
    """Add ``m`` with its users, restricted to the shares some user may pass it at."""
    if len(m.at) == 0:
        return
    mine = {}
    for ci in np.flatnonzero(slack >= 0):
        at = np.intersect1d(m.at, np.flatnonzero(_passable(m, e_lo, rates[ci], slack[ci])))
        if len(at):
            mine[int(ci)] = at
    if not mine:
        return
    m.at = np.unique(np.concatenate(list(mine.values())))
    mi = len(members)
    members.append(m)
    for ci, at in mine.items():
        users[(ci, mi)] = at


def _force_planned(members: list[Member], users: dict, planned: list[list[PlannedMember]],
                   shares: np.ndarray, grids: list[np.ndarray], segments: list,
                   cost: CostModel) -> None:
    """Make every member of ``planned`` slices a candidate at its share, for its
    commodities, with as many copies of a (segment, batch) as one slice holds."""
    index = {(m.segment, m.batch, m.copy): mi for mi, m in enumerate(members)}
    for group in planned:
        seen: Counter = Counter()
        for pm in group:
            copy = seen[(pm.segment, pm.batch)]
            seen[(pm.segment, pm.batch)] += 1
            g = int(np.argmin(np.abs(shares - pm.share)))
            mi = index.get((pm.segment, pm.batch, copy))
            if mi is None:
                seg = segments[pm.segment]
                bi = list(cost.batches).index(pm.batch)
                handoff = float(rules.planned_handoff_ms(cost, seg.model, seg.end, pm.batch))
                mi = index[(pm.segment, pm.batch, copy)] = len(members)
                members.append(Member(pm.segment, pm.batch, handoff, grids[pm.segment][bi],
                                      np.zeros(0, dtype=int), copy))
            m = members[mi]
            m.at = np.union1d(m.at, [g])
            for ci in pm.commodities:
                users[(ci, mi)] = np.union1d(users.get((ci, mi), np.zeros(0, dtype=int)), [g])
    # a copy serves whom the first does
    for mi, m in enumerate(members):
        if m.copy:
            first = index[(m.segment, m.batch, 0)]
            m.at = np.union1d(m.at, members[first].at)
            for (ci, mj), at in list(users.items()):
                if mj == first:
                    users[(ci, mi)] = np.union1d(users.get((ci, mi), at), at)


# --- columns and rows ----------------------------------------------------------------------

def add_slices(form, space: SliceSpace, commodities: list, segments: list) -> SliceCols:
    """Add the slice columns and rows (module docstring) to ``form``, and the member arcs
    and latency terms to its open routes."""
    cols = SliceCols(space)
    for i in range(space.instances):
        _add_instance(form, cols, i, commodities, segments)
    for i in range(space.instances - 1):  # symmetry: shares non-increasing in i
        a = [cols.sigma[(i, g)] for g in range(len(space.shares))]
        b = [cols.sigma[(i + 1, g)] for g in range(len(space.shares))]
        form.add_row(a + b, list(space.shares) + [-x for x in space.shares], 0.0, math.inf)
    return cols


def _add_instance(form, cols: SliceCols, i: int, commodities: list, segments: list) -> None:
    """Slice ``i``: its share and duty-cycle columns, its members, and its rows."""
    space = cols.space
    n_g = len(space.shares)
    sig = [form.add_col(float(g), 0.0, 1.0, True) for g in space.shares]
    for g, col in enumerate(sig):
        cols.sigma[(i, g)] = col
    form.add_row(sig, [1.0] * n_g, -math.inf, 1.0)
    for g in range(n_g):  # D[g]: the duty cycle if the slice runs at share g (else 0)
        d_hi = float(space.d_max_at[g])
        cols.d[(i, g)] = form.add_col(0.0, 0.0, d_hi, False)
        form.add_row([cols.d[(i, g)], sig[g]], [1.0, -d_hi], -math.inf, 0.0)
    for mi in range(len(space.members)):
        _add_member_cols(form, cols, i, mi, commodities, segments)
    v_all = [cols.v[(i, mi)] for mi in range(len(space.members))]
    us = [(col, mi, g) for (j, mi, g), col in cols.u.items() if j == i]
    at_share: dict[int, list[tuple[int, float]]] = defaultdict(list)
    for col, mi, g in us:
        at_share[g].append((col, float(space.members[mi].exec_ms[g])))
    for g, terms in at_share.items():  # D[g] >= the members' e at g
        form.add_row([cols.d[(i, g)]] + [c for c, _ in terms], [1.0] + [-e for _, e in terms],
                     0.0, math.inf)
    # the members' parts of the slice (g e / D each) sum to its share
    parts = [cols.p[(i, mi)] for mi in range(len(space.members))]
    form.add_row(parts + sig, [1.0] * len(parts) + [-float(g) for g in space.shares],
                 -math.inf, 0.0)
    # no worse than its members as solo 2e stages (a known plan's shares exempt)
    form.add_row(sig + [col for col, _, _ in us],
                 [0.0 if g in space.exempt else float(x) for g, x in enumerate(space.shares)]
                 + [-float(space.members[mi].solo[g]) for _, mi, g in us], -math.inf, 0.0)
    # between 2 and max_members members when the slice is used
    form.add_row(v_all + sig, [1.0] * len(v_all) + [-2.0] * n_g, 0.0, math.inf)
    form.add_row(v_all, [1.0] * len(v_all), -math.inf, float(space.max_members))


def _add_member_cols(form, cols: SliceCols, i: int, mi: int, commodities: list,
                     segments: list) -> None:
    """Member ``mi`` of slice ``i``: v, u[g], its part p, its users, and its rows."""
    space = cols.space
    m = space.members[mi]
    v = cols.v[(i, mi)] = form.add_col(0.0, 0.0, 1.0, True)
    for g in map(int, m.at):  # u[g] = v and sigma[g]: sum_g u = v, u <= sigma
        u = cols.u[(i, mi, g)] = form.add_col(0.0, 0.0, 1.0, False)
        sig = cols.sigma[(i, g)]
        form.add_row([u, sig], [1.0, -1.0], -math.inf, 0.0)
        # D[g] <= d_cap u + Dmax_g (sigma - u): the member bounds the duty cycle
        d_hi, cap = float(space.d_max_at[g]), float(m.d_cap[g])
        if cap < d_hi * (1 - 1e-9):
            form.add_row([cols.d[(i, g)], u, sig], [1.0, d_hi - cap, -d_hi], -math.inf, 0.0)
    form.add_row([v] + [cols.u[(i, mi, int(g))] for g in m.at],
                 [1.0] + [-1.0] * len(m.at), 0.0, 0.0)
    cols.p[(i, mi)] = form.add_col(0.0, 0.0, math.inf, False)
    users = [ci for ci in range(len(commodities)) if (ci, mi) in space.users]
    ys = [_add_user(form, cols, i, mi, ci, commodities, segments) for ci in users]
    form.add_row([v] + ys, [1.0] + [-1.0] * len(ys), -math.inf, 0.0)  # used if kept
    form.add_row([cols.q[(ci, i, mi)] for ci in users],
                 [commodities[ci].rate / (1000.0 * m.batch) for ci in users],
                 -math.inf, 1.0)  # R * D <= 1000 B, scaled
    _add_part_rows(form, cols, i, mi, users, commodities)


def _add_part_rows(form, cols: SliceCols, i: int, mi: int, users: list[int],
                   commodities: list) -> None:
    """Lower bounds on member ``mi``'s part ``g e / D`` of slice ``i``: its capacity needs
    ``D <= 1000 B / R``, and a commodity c through it needs ``D <= slack_c - e - handoff``."""
    space = cols.space
    m = space.members[mi]
    p = cols.p[(i, mi)]
    idx, val = [p], [1.0]
    for ci in users:
        gs = space.users[(ci, mi)]
        ygs = [cols.yg[(ci, i, mi, int(g))] for g in gs]
        part = space.shares[gs] * m.exec_ms[gs]
        idx += ygs
        val += list(-part * commodities[ci].rate / (1000.0 * m.batch))
        room = space.slack[(ci, m.segment)] - m.exec_ms[gs] - m.handoff_ms
        form.add_row([p] + ygs, [1.0] + list(-part / room), 0.0, math.inf)
    form.add_row(idx, val, 0.0, math.inf)


def _add_user(form, cols: SliceCols, i: int, mi: int, ci: int, commodities: list,
              segments: list) -> int:
    """Columns y, yg, t, q of commodity ``ci`` through member ``mi`` of slice ``i``; returns
    y."""
    space = cols.space
    m = space.members[mi]
    at = space.users[(ci, mi)]
    seg = segments[m.segment]
    v = cols.v[(i, mi)]
    y = cols.y[(ci, i, mi)] = form.add_col(0.0, 0.0, 1.0, True)
    big = space.d_max + float(np.max(m.exec_ms[m.at]))
    t = cols.t[(ci, i, mi)] = form.add_col(0.0, 0.0, big, False)
    q = cols.q[(ci, i, mi)] = form.add_col(0.0, 0.0, space.d_max, False)
    form.add_row([y, v], [1.0, -1.0], -math.inf, 0.0)
    # yg[g] = y and u[g]: sum_g yg = y, yg <= u
    ygs = []
    for g in at:
        yg = cols.yg[(ci, i, mi, int(g))] = form.add_col(0.0, 0.0, 1.0, False)
        form.add_row([yg, cols.u[(i, mi, int(g))]], [1.0, -1.0], -math.inf, 0.0)
        ygs.append(yg)
    form.add_row([y] + ygs, [1.0] + [-1.0] * len(ygs), 0.0, 0.0)
    e, lo = m.exec_ms[at], space.e_lo[at]
    # D y = sum_g D[g] yg[g] >= sum_g D[g] - Dmax (sigma[g] - yg[g]), summed over every share
    # (a share the slice does not run at adds 0), then t >= D y + e y and q >= D y
    n_g = len(space.shares)
    base_idx = [cols.d[(i, g)] for g in range(n_g)] + [cols.sigma[(i, g)] for g in range(n_g)]
    base_val = [-1.0] * n_g + list(space.d_max_at)
    d_hi = space.d_max_at[at]
    form.add_row([t] + base_idx + ygs, [1.0] + base_val + list(-d_hi - e), 0.0, math.inf)
    form.add_row([q] + base_idx + ygs, [1.0] + base_val + list(-d_hi), 0.0, math.inf)
    # and t >= (2 e + e_lo) y, q >= (e + e_lo) y at the slice's share
    form.add_row([t] + ygs, [1.0] + list(-(2 * e + lo)), 0.0, math.inf)
    form.add_row([q] + ygs, [1.0] + list(-(e + lo)), 0.0, math.inf)
    form.add_arc(ci, y, seg.start, seg.end, [(y, m.handoff_ms), (t, 1.0)])
    return y


# --- a known plan as a start, and the solution as drafts ------------------------------------

def planned_slices(plan: Plan, route_of: dict[int, tuple[str, ...]],
                   seg_of: dict[tuple[str, int, int], int]) -> list[list[PlannedMember]] | None:
    """The slices of ``plan`` in the MILP's terms (ordered by share, largest first), or None
    when a member's segment is not a candidate."""
    by_slice: dict[str, list[PlannedMember]] = defaultdict(list)
    for st in plan.stages:
        if st.slice is None:
            continue
        si = seg_of.get((st.model, st.start, st.end))
        if si is None:
            return None
        users = tuple(sorted(ci for ci, r in route_of.items() if st.id in r))
        by_slice[st.slice].append(PlannedMember(si, st.batch, float(st.slice_share), users))
    return sorted(by_slice.values(), key=lambda g: -g[0].share)


def slice_start(cols: SliceCols, planned: list[list[PlannedMember]],
                x: np.ndarray) -> bool:
    """Set the slice columns of start ``x`` to ``planned`` slices; False where a column is
    missing."""
    space = cols.space
    if len(planned) > space.instances:
        return False
    index = {(m.segment, m.batch, m.copy): mi for mi, m in enumerate(space.members)}
    for i, group in enumerate(planned):
        g = int(np.argmin(np.abs(space.shares - group[0].share)))
        x[cols.sigma[(i, g)]] = 1.0
        seen: Counter = Counter()
        chosen = []
        for pm in group:
            mi = index.get((pm.segment, pm.batch, seen[(pm.segment, pm.batch)]))
            seen[(pm.segment, pm.batch)] += 1
            if mi is None or (i, mi, g) not in cols.u:
                return False
            chosen.append((mi, pm))
        duty = sum(float(space.members[mi].exec_ms[g]) for mi, _ in chosen)
        x[cols.d[(i, g)]] = duty
        for mi, pm in chosen:
            e = float(space.members[mi].exec_ms[g])
            x[cols.v[(i, mi)]] = x[cols.u[(i, mi, g)]] = 1.0
            x[cols.p[(i, mi)]] = float(space.shares[g]) * e / duty
            for ci in pm.commodities:
                if (ci, i, mi, g) not in cols.yg:
                    return False
                x[cols.y[(ci, i, mi)]] = x[cols.yg[(ci, i, mi, g)]] = 1.0
                x[cols.t[(ci, i, mi)]] = duty + e
                x[cols.q[(ci, i, mi)]] = duty
    return True


def slice_drafts(values: np.ndarray, cols: SliceCols, commodities: list, segments: list,
                 first_key: int = 0) -> list[StageDraft]:
    """The slices the solution ``values`` picks, as drafts (their duty cycles recomputed
    from the members' execution times). A slice left with one member is a 2e stage."""
    space = cols.space
    drafts: list[StageDraft] = []
    for i in range(space.instances):
        g = [gi for gi in range(len(space.shares)) if values[cols.sigma[(i, gi)]] > 0.5]
        if not g:
            continue
        share = float(space.shares[g[0]])
        members = []
        for mi, m in enumerate(space.members):
            users = [ci for ci in range(len(commodities))
                     if (ci, i, mi) in cols.y and values[cols.y[(ci, i, mi)]] > 0.5]
            if users:
                members.append((m, float(m.exec_ms[g[0]]), users))
        duty = sum(e for _, e, _ in members)
        key = first_key + i
        for m, e, users in members:
            seg = segments[m.segment]
            flows = [f for ci in sorted(users) for f in commodities[ci].flows]
            config = StageConfig(batch=m.batch, share=share, replicas=1, exec_ms=e,
                                 handoff_ms=m.handoff_ms)
            alone = len(members) == 1
            drafts.append(StageDraft(seg.model, seg.start, seg.end, config, flows,
                                     slice_key=None if alone else key,
                                     duty_ms=None if alone else duty))
    return drafts
