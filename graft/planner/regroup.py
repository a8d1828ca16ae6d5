"""Step 4 of the graft planner, on small workloads: a local search over the groups.

``group`` splits a model's fragments into runs of budget classes and prices every run
without time-shared slices, which are chosen afterwards. Two kinds of plan escape it: a
group that is not a run of budget classes (fragments entering late, whatever their budget,
served by a stage of their own beside the trunk that carries the early ones), and a
grouping that costs more before time-sharing but less after it. ``regroup`` starts from
``group``'s choice and tries, in a fixed order, the moves below; the first that does not
raise the total share after ``slack`` and ``timeshare`` is taken (to a grouping not seen
before: moves that keep the share let a next move pay), and the search goes on from there:

- serve a group another way: re-aligned (the cheapest staircase), as the full staircase
  (every partition point kept: more, smaller stages, which slices may hold for less), or
  privately in budget groups;
- move one fragment into another group of its model, or into a group of its own;
- split a group in two at a partition point, or at a budget;
- merge two groups of one model.

Every evaluation plans the whole workload (re-alignments and budget groups are cached per
group), so the search is bounded: it runs when the workload has at most
``REGROUP_MAX_FRAGMENTS`` fragments and ``REGROUP_MAX_FLOWS`` flows, and stops after
``REGROUP_MAX_EVALS`` evaluations or when no unseen neighbour is as cheap. The cheapest
grouping seen is kept, so the plan never needs more share than ``group``'s.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterator

from graft.cost.base import CostModel
from graft.planner.assemble import StageDraft
from graft.planner.budget_groups import FragmentFlows
from graft.planner.configs import EPS
from graft.planner.group import PRIVATE, REALIGN, STAIRCASE, Group
from graft.planner.merge import collapse_by_partition
from graft.planner.realign import realign
from graft.workload.flows import Flow

#: Largest workload the search runs on: fragments (after merging) and flows (every
#: evaluation hands slack back flow by flow).
REGROUP_MAX_FRAGMENTS = 24
REGROUP_MAX_FLOWS = 2000
#: Most plans the search evaluates.
REGROUP_MAX_EVALS = 200

log = logging.getLogger(__name__)

Finish = Callable[[list[StageDraft]], list[StageDraft]]


def drafts_share(drafts: list[StageDraft]) -> float:
    """Total share of ``drafts``: a time-shared slice counts once."""
    total, seen = 0.0, set()
    for d in drafts:
        if d.slice_key is None:
            total += d.config.share * d.config.replicas
        elif d.slice_key not in seen:
            seen.add(d.slice_key)
            total += d.config.share
    return total


class GroupDrafts:
    """Each group's stages (re-aligned, or budget groups per partition point), cached."""

    def __init__(self, cost: CostModel, steps: int):
        self.cost = cost
        self.steps = steps
        self._cache: dict[tuple[frozenset, bool], list[StageDraft] | None] = {}

    def __call__(self, group: Group) -> list[StageDraft] | None:
        """The group's stages, or None where its fragments cannot be re-aligned together."""
        key = (frozenset(group.fragments), group.how)
        if key not in self._cache:
            self._cache[key] = self._plan(group)
        return self._cache[key]

    def _plan(self, group: Group) -> list[StageDraft] | None:
        if group.how != PRIVATE:
            try:
                return realign(collapse_by_partition(group.fragments), self.cost, self.steps,
                               keep_all=group.how == STAIRCASE).drafts
            except ValueError:  # no staircase meets every fragment's budget
                return None
        by_point: dict[int, list[Flow]] = defaultdict(list)
        for fr in group.fragments:
            by_point[fr.partition].extend(fr.flows)
        model = group.fragments[0].model
        out: list[StageDraft] = []
        for p in sorted(by_point):
            flows = FragmentFlows(self.cost, model, p, by_point[p])
            out.extend(flows.drafts(0, flows.n))
        return out


def _moves(groups: list[Group]) -> Iterator[list[Group]]:
    """The neighbours of ``groups``, in a fixed order (see the module docstring)."""
    def without(*idx: int) -> list[Group]:
        return [g for i, g in enumerate(groups) if i not in idx]

    for i, g in enumerate(groups):
        for how in (REALIGN, STAIRCASE, PRIVATE):
            if how != g.how:
                yield [*without(i)[:i], Group(g.fragments, how), *without(i)[i:]]
    for i, g in enumerate(groups):
        model = g.fragments[0].model
        for f in g.fragments:
            rest = tuple(x for x in g.fragments if x is not f)
            kept = [Group(rest, g.how)] if rest else []
            for j, h in enumerate(groups):
                if j != i and h.fragments[0].model == model:
                    yield [*without(i, j), *kept, Group((*h.fragments, f), h.how)]
            if rest:
                yield [*without(i), *kept, Group((f,))]
    for i, g in enumerate(groups):
        for key in (lambda f: f.partition, lambda f: f.budget_ms):
            for t in sorted({key(f) for f in g.fragments})[1:]:
                lo = tuple(f for f in g.fragments if key(f) < t)
                hi = tuple(f for f in g.fragments if key(f) >= t)
                yield [*without(i), Group(lo), Group(hi)]
    for i, g in enumerate(groups):
        for j in range(i + 1, len(groups)):
            h = groups[j]
            if h.fragments[0].model == g.fragments[0].model:
                yield [*without(i, j), Group((*g.fragments, *h.fragments))]


def _key(groups: list[Group]) -> frozenset:
    return frozenset((frozenset(g.fragments), g.how) for g in groups)


def regroup(groups: list[Group], plan_group: GroupDrafts, finish: Finish,
            max_evals: int = REGROUP_MAX_EVALS) -> tuple[list[Group], list[StageDraft]]:
    """The cheapest groups the search finds, and their finished stages."""
    def evaluate(gs: list[Group]) -> tuple[float, list[StageDraft]]:
        planned = [plan_group(g) for g in gs]
        if any(p is None for p in planned):
            return float("inf"), []
        drafts = finish([d for p in planned if p is not None for d in p])
        return drafts_share(drafts), drafts

    share, drafts = evaluate(groups)
    best = (share, drafts, groups)
    seen, evals, moved = {_key(groups)}, 1, True
    while moved and evals < max_evals:
        moved = False
        for candidate in _moves(groups):
            key = _key(candidate)
            if key in seen:
                continue
            seen.add(key)
            trial, trial_drafts = evaluate(candidate)
            evals += 1
            if trial <= share + EPS:  # sideways moves too: a next move may then pay
                groups, share, drafts, moved = candidate, trial, trial_drafts, True
                if share < best[0] - EPS:
                    best = (share, drafts, groups)
                break
            if evals >= max_evals:
                break
    log.debug("regroup: share %.4f, %d evaluations", best[0], evals)
    return best[2], best[1]
