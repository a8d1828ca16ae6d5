"""Step 2 of the graft planner: group a model's fragments by budget class.

A very tight fragment drags a shared trunk down: every stage it shares must be fast, so
everyone sharing it pays for small batches. Fragments sorted by budget are cut into at most
``max_classes`` classes at the widest gaps of log-budget; any run of consecutive classes
may form one group. A dynamic program over the classes picks the partition into groups
whose re-aligned costs sum to the least.
"""

from __future__ import annotations

import math

from graft.cost.base import CostModel
from graft.planner.merge import Fragment, collapse_by_partition
from graft.planner.realign import DEFAULT_STEPS, Alignment, realign

DEFAULT_MAX_CLASSES = 4
#: Share below which two costs count as equal (shares are whole percentages or coarser).
TIE_EPS = 1e-9


def budget_classes(fragments: list[Fragment], max_classes: int) -> list[list[Fragment]]:
    """Fragments cut into at most ``max_classes`` runs of increasing budget, split at the
    widest gaps between consecutive log-budgets."""
    frags = sorted(fragments, key=lambda f: (f.budget_ms, f.partition))
    if len(frags) <= 1:
        return [frags]
    gaps = sorted(
        range(1, len(frags)),
        key=lambda i: (-(math.log(frags[i].budget_ms) - math.log(frags[i - 1].budget_ms)), i),
    )
    cuts = sorted(i for i in gaps[: max_classes - 1]
                  if frags[i].budget_ms > frags[i - 1].budget_ms)
    bounds = [0, *cuts, len(frags)]
    return [frags[a:b] for a, b in zip(bounds, bounds[1:])]


def best_grouping(
    fragments: list[Fragment],
    cost: CostModel,
    *,
    max_classes: int = DEFAULT_MAX_CLASSES,
    steps: int = DEFAULT_STEPS,
) -> list[Alignment]:
    """The cheapest split of one model's fragments into groups of consecutive budget
    classes, each group re-aligned on its own."""
    classes = budget_classes(fragments, max_classes)
    n = len(classes)
    best_cost = [0.0] + [math.inf] * n
    best_groups: list[list[Alignment]] = [[] for _ in range(n + 1)]
    for end in range(1, n + 1):
        for start in range(end):
            members = [f for c in classes[start:end] for f in c]
            alignment = realign(collapse_by_partition(members), cost, steps)
            total = best_cost[start] + alignment.cost
            # ties (to rounding) keep the fewer, larger groups found first: their shared
            # stages pool more traffic, so bursts and shifts between budgets hurt less
            if total < best_cost[end] - TIE_EPS:
                best_cost[end] = total
                best_groups[end] = [*best_groups[start], alignment]
    return best_groups[n]
