"""Which flows any plan can serve at all.

A flow's requests spend at least ``rules.needed_budget_ms`` in the server: its fragment
[p, L) as one stage at its fastest batch and share, under the 2e rule. A flow whose budget
is below that is unservable: it is named with the budget it would need.
"""

from __future__ import annotations

from graft.cost.base import CostModel
from graft.errors import GraftInputError
from graft.plan.plan import Unserved
from graft.plan.rules import EPS, needed_budget_ms
from graft.workload.flows import Flow, Workload


def split_servable(
    workload: Workload, cost: CostModel, *, allow_partial: bool
) -> tuple[list[Flow], tuple[Unserved, ...]]:
    """The flows a plan can serve, and the rest as ``Unserved`` records.

    Without ``allow_partial`` an unservable flow is an input error naming the flow and the
    budget it would need.
    """
    served: list[Flow] = []
    unserved: list[Unserved] = []
    for f in workload.flows:
        need = needed_budget_ms(cost, f.model, f.partition)
        if f.budget_ms * (1 + EPS) >= need:
            served.append(f)
            continue
        if not allow_partial:
            raise GraftInputError(
                f"budget {f.budget_ms:g} ms is below the {need:.3f} ms that the fastest "
                f"{f.model} fragment from block {f.partition} needs under {cost.name} "
                "(use --allow-partial to plan the other flows)",
                field="budget_ms",
                flow=f.id,
            )
        unserved.append(Unserved(flow=f.id, needed_budget_ms=round(need, 6)))
    return served, tuple(unserved)
