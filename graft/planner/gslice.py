"""The GSLICE baselines: fine-grained-share instances, no re-alignment.

* ``gslice`` (``GslicePlanner``): the strongest GSLICE-style plan without re-alignment. Per
  distinct (model, partition) fragment, its flows sorted by budget are cut into contiguous
  budget groups by an exact dynamic program (``graft.planner.budget_groups``); each group
  is its own instance [p, L) with the cheapest (batch, share, replicas) whose 2e fits the
  group's tightest budget. What an operator deploys for clients whose budgets differ.
* ``gslice-single`` (``GsliceSinglePlanner``): one instance per fragment at the tightest
  budget among its flows (the baseline of the GSLICE paper's setting, and graft's before).

Fragments of the same model never batch together; no time-sharing.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from graft.cost.base import CostModel
from graft.models.catalog import get_model
from graft.plan.plan import Plan
from graft.planner.assemble import StageDraft, assemble_plan
from graft.planner.budget_groups import FragmentFlows
from graft.planner.configs import segment_options
from graft.planner.servable import split_servable
from graft.workload.flows import Flow, Workload


def _fragments(flows: list[Flow]) -> dict[tuple[str, int], list[Flow]]:
    out: dict[tuple[str, int], list[Flow]] = defaultdict(list)
    for f in flows:
        out[(f.model, f.partition)].append(f)
    return dict(sorted(out.items()))


@dataclass(frozen=True)
class GslicePlanner:
    name: str = "gslice"

    def plan(self, workload: Workload, cost: CostModel, *, allow_partial: bool = False) -> Plan:
        served, unserved = split_servable(workload, cost, allow_partial=allow_partial)
        drafts: list[StageDraft] = []
        for (model, p), flows in _fragments(served).items():
            fragment = FragmentFlows(cost, model, p, flows)
            drafts.extend(fragment.drafts(0, fragment.n))
        return assemble_plan(self.name, cost, drafts, served, unserved)


@dataclass(frozen=True)
class GsliceSinglePlanner:
    name: str = "gslice-single"

    def plan(self, workload: Workload, cost: CostModel, *, allow_partial: bool = False) -> Plan:
        served, unserved = split_servable(workload, cost, allow_partial=allow_partial)
        drafts = []
        for (model, p), flows in _fragments(served).items():
            end = get_model(model).num_blocks
            config = segment_options(cost, model, p, end).cheapest(
                sum(f.rate for f in flows), min(f.budget_ms for f in flows))
            assert config is not None, "split_servable admitted an unservable fragment"
            drafts.append(StageDraft(model, p, end, config, list(flows)))
        return assemble_plan(self.name, cost, drafts, served, unserved)
