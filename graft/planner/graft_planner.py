"""The ``graft`` planner: merge, group, re-align, allocate, pack.

1. merge flows of one fragment with close budgets (``merge``);
2. group each model's fragments into budget classes (``group``);
3. re-align every group into a staircase of shared stages, choosing each stage's batch,
   share and replicas (``realign``; allocation is part of its dynamic program), or serve
   it in private budget groups where that is cheaper (``budget_groups``), then hand unused
   budget back to the stages (``slack``);
4. let low-rate stages take turns on shared slices where that saves share (``timeshare``);
   on small workloads, search other groupings whose plans cost less once time-shared
   (``regroup``);
5. pack stage replicas onto GPUs (``pack``, through ``assemble``), and keep a variant
   whose multi-replica stages take shares that pack onto fewer GPUs (``shape``) if it does
   and still needs no more share than ``gslice``.

Steps 2-4 never raise the total share, and step 2 contains ``gslice``'s plan (every class
served privately), so a graft plan never needs more share than ``gslice``'s.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass

from graft.cost.base import CostModel
from graft.plan.plan import Plan
from graft.planner.assemble import StageDraft, assemble_plan
from graft.planner.group import DEFAULT_MAX_CLASSES, Group, best_grouping
from graft.planner.merge import DEFAULT_TOLERANCE, Fragment, merge_flows
from graft.planner.realign import DEFAULT_STEPS
from graft.planner.regroup import (
    REGROUP_MAX_FLOWS,
    REGROUP_MAX_FRAGMENTS,
    GroupDrafts,
    regroup,
)
from graft.planner.servable import split_servable
from graft.planner.shape import shape_replicas
from graft.planner.slack import reclaim_slack
from graft.planner.timeshare import share_slices
from graft.workload.flows import Workload


@dataclass(frozen=True)
class GraftPlanner:
    name: str = "graft"
    merge_tolerance: float = DEFAULT_TOLERANCE
    max_classes: int = DEFAULT_MAX_CLASSES
    budget_steps: int = DEFAULT_STEPS
    time_share: bool = True
    shape_replicas: bool = True
    #: largest workload, in fragments, that ``regroup`` searches (0: never)
    regroup_fragments: int = REGROUP_MAX_FRAGMENTS

    def plan(self, workload: Workload, cost: CostModel, *, allow_partial: bool = False) -> Plan:
        t0 = time.perf_counter()
        served, unserved = split_servable(workload, cost, allow_partial=allow_partial)
        by_model: dict[str, list[Fragment]] = defaultdict(list)
        for fr in merge_flows(served, self.merge_tolerance):
            by_model[fr.model].append(fr)
        drafts: list[StageDraft] = []
        groups: list[Group] = []
        gslice_share = 0.0  # what gslice's plan needs: shaping may not exceed it
        for model in sorted(by_model):
            grouping = best_grouping(by_model[model], cost, max_classes=self.max_classes,
                                     steps=self.budget_steps)
            groups.extend(grouping.groups)
            gslice_share += grouping.private_cost
            for a in grouping.alignments:
                drafts.extend(a.drafts)
        drafts = self._finish(drafts, cost)
        fragments = sum(len(v) for v in by_model.values())
        if 0 < fragments <= self.regroup_fragments and len(served) <= REGROUP_MAX_FLOWS:
            groups, drafts = regroup(groups, GroupDrafts(cost, self.budget_steps),
                                     lambda ds: self._finish(ds, cost))
        info = {"groups": len(groups), "fragments": fragments}
        plan = assemble_plan(self.name, cost, drafts, served, unserved, **info)
        if self.shape_replicas:
            shaped = shape_replicas(drafts, cost)
            if shaped != drafts:  # keep the shaped plan only if it packs onto fewer GPUs
                other = assemble_plan(self.name, cost, shaped, served, unserved, **info)
                if ((other.gpus, other.total_share) < (plan.gpus, plan.total_share)
                        and other.total_share <= gslice_share * (1 + 1e-9)):
                    plan = other
        return plan.with_info(planning_s=round(time.perf_counter() - t0, 4))

    def _finish(self, drafts: list[StageDraft], cost: CostModel) -> list[StageDraft]:
        """Unused budget handed back to the stages, then low-rate stages time-shared."""
        drafts = reclaim_slack(drafts, cost)
        return share_slices(drafts, cost) if self.time_share else drafts
