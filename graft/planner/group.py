"""Step 2 of the graft planner: group a model's fragments by budget class.

A very tight fragment drags a shared trunk down: every stage it shares must be fast, so
everyone sharing it pays for small batches. Fragments sorted by budget are cut into at most
``max_classes`` classes at the widest gaps of log-budget; any run of consecutive classes
may form one group. A group is served either re-aligned (``realign``: a staircase of shared
stages) or privately: every partition point's flows in the group cut into budget groups,
each its own instance [p, L) (``budget_groups``, exact per point), whichever is cheaper. A
dynamic program over the classes picks the partition into groups whose costs sum to the
least.

The run of all classes served privately is exactly the ``gslice`` plan of the model, so the
grouping never costs more than ``gslice``; finer budget splits than the classes are searched
by the private option, where no re-alignment is lost by them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass

from graft.cost.base import CostModel
from graft.planner.budget_groups import FragmentFlows
from graft.planner.lower_bound import lower_bound_share
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


class PrivateRuns:
    """The private (budget-grouped, not re-aligned) cost of any run of classes.

    Per partition point, the flows of a run of consecutive classes are a contiguous range
    of that point's flows sorted by budget: ``FragmentFlows`` solves every range starting
    at a class boundary in one pass.
    """

    def __init__(self, classes: list[list[Fragment]], cost: CostModel):
        flows_at: dict[int, list] = defaultdict(list)
        #: per point, how many of its flows lie in the classes before each class boundary
        counts: dict[int, list[int]] = defaultdict(lambda: [0] * (len(classes) + 1))
        for c, members in enumerate(classes):
            for fr in members:
                flows_at[fr.partition].extend(fr.flows)
                counts[fr.partition][c + 1] += len(fr.flows)
        self.bounds = {p: [sum(n[: k + 1]) for k in range(len(classes) + 1)]
                       for p, n in counts.items()}
        model = classes[0][0].model
        self.points = {p: FragmentFlows(cost, model, p, flows) for p, flows in flows_at.items()}
        for p, fragment in self.points.items():
            fragment.solve(self.bounds[p][:-1])

    def cost(self, start: int, end: int) -> float:
        """Cost of classes [start, end) served privately."""
        return sum(fr.cost(self.bounds[p][start], self.bounds[p][end])
                   for p, fr in self.points.items())

    def alignment(self, start: int, end: int) -> Alignment:
        drafts = [d for p, fr in sorted(self.points.items())
                  for d in fr.drafts(self.bounds[p][start], self.bounds[p][end])]
        return Alignment(self.cost(start, end), drafts)


#: How a group's fragments are served: the cheapest staircase (``realign``), the full
#: staircase (every partition point kept), or private budget groups per partition point.
REALIGN, STAIRCASE, PRIVATE = "realign", "staircase", "private"


@dataclass(frozen=True)
class Group:
    """Fragments of one model planned together, and how (``REALIGN``, ``STAIRCASE`` or
    ``PRIVATE``)."""

    fragments: tuple[Fragment, ...]
    how: str = REALIGN


@dataclass
class Grouping:
    """A model's groups (``groups``, with their plans in ``alignments``), and what serving
    every class privately costs (``gslice``'s plan of the model, which the groups never
    exceed)."""

    alignments: list[Alignment]
    private_cost: float
    groups: list[Group]

    @property
    def cost(self) -> float:
        return sum(a.cost for a in self.alignments)


def best_grouping(
    fragments: list[Fragment],
    cost: CostModel,
    *,
    max_classes: int = DEFAULT_MAX_CLASSES,
    steps: int = DEFAULT_STEPS,
) -> Grouping:
    """The cheapest split of one model's fragments into groups of consecutive budget
    classes, each group re-aligned on its own or served privately."""
    classes = budget_classes(fragments, max_classes)
    private = PrivateRuns(classes, cost)
    n = len(classes)
    best_cost = [0.0] + [math.inf] * n
    #: per prefix of classes, its best groups: (first class, end, the re-alignment or None
    #: when the run is served privately)
    best_groups: list[list[tuple[int, int, Alignment | None]]] = [[] for _ in range(n + 1)]
    for end in range(1, n + 1):
        for start in range(end):
            members = [f for c in classes[start:end] for f in c]
            own = private.cost(start, end)
            # no re-alignment costs less than the run's lower bound: skip it when neither
            # that nor the private groups can improve on the best split found so far
            bound = lower_bound_share([fl for f in members for fl in f.flows], cost)
            if best_cost[start] + min(bound, own) >= best_cost[end] - TIE_EPS:
                continue
            alignment: Alignment | None = realign(collapse_by_partition(members), cost, steps)
            group_cost = alignment.cost
            # the private groups only where strictly cheaper: re-aligned stages pool traffic
            if own < alignment.cost - TIE_EPS:
                alignment, group_cost = None, own
            total = best_cost[start] + group_cost
            # ties (to rounding) keep the fewer, larger groups found first: their shared
            # stages pool more traffic, so bursts and shifts between budgets hurt less
            if total < best_cost[end] - TIE_EPS:
                best_cost[end] = total
                best_groups[end] = [*best_groups[start], (start, end, alignment)]
    chosen = best_groups[n]
    return Grouping([a if a is not None else private.alignment(s, e) for s, e, a in chosen],
                    private.cost(0, n),
                    [Group(tuple(f for c in classes[s:e] for f in c),
                           REALIGN if a is not None else PRIVATE) for s, e, a in chosen])
