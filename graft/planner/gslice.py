"""The ``gslice`` baseline: one fine-grained-share instance per distinct fragment.

Every distinct (model, partition) fragment gets its own stage [p, L) with the cheapest
(batch, share, replicas) whose 2e fits the tightest budget among its flows. No re-alignment:
fragments of the same model never batch together.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from graft.cost.base import CostModel
from graft.models.catalog import get_model
from graft.plan.plan import Plan
from graft.planner.assemble import StageDraft, assemble_plan
from graft.planner.configs import segment_options
from graft.planner.servable import split_servable
from graft.workload.flows import Flow, Workload


@dataclass(frozen=True)
class GslicePlanner:
    name: str = "gslice"

    def plan(self, workload: Workload, cost: CostModel, *, allow_partial: bool = False) -> Plan:
        served, unserved = split_servable(workload, cost, allow_partial=allow_partial)
        fragments: dict[tuple[str, int], list[Flow]] = defaultdict(list)
        for f in served:
            fragments[(f.model, f.partition)].append(f)
        drafts = []
        for (model, p), flows in sorted(fragments.items()):
            end = get_model(model).num_blocks
            config = segment_options(cost, model, p, end).cheapest(
                sum(f.rate for f in flows), min(f.budget_ms for f in flows))
            assert config is not None, "split_servable admitted an unservable fragment"
            drafts.append(StageDraft(model, p, end, config, list(flows)))
        return assemble_plan(self.name, cost, drafts, served, unserved)
