"""The one interface every planner and baseline implements."""

from __future__ import annotations

from typing import Protocol

from graft.cost.base import CostModel
from graft.plan.plan import Plan
from graft.workload.flows import Workload


class Planner(Protocol):
    name: str

    def plan(self, workload: Workload, cost: CostModel, *, allow_partial: bool = False) -> Plan:
        """A plan serving every flow of ``workload`` (or, with ``allow_partial``, every flow
        that any plan can serve, listing the rest as unserved)."""
        ...
