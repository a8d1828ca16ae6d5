"""Step 1 of the graft planner: merge flows that would be planned alike.

Flows of the same model and partition whose budgets are within ``tolerance`` of the
smallest among them become one fragment: rates add, the budget is the smallest.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from graft.workload.flows import Flow

DEFAULT_TOLERANCE = 0.05


@dataclass(frozen=True)
class Fragment:
    """Traffic that enters the server at ``partition`` of ``model`` with one budget."""

    model: str
    partition: int
    rate: float
    budget_ms: float
    flows: tuple[Flow, ...]


def fragment_of(flows: Iterable[Flow]) -> Fragment:
    flows = tuple(flows)
    first = flows[0]
    assert all(f.model == first.model and f.partition == first.partition for f in flows)
    return Fragment(model=first.model, partition=first.partition,
                    rate=sum(f.rate for f in flows),
                    budget_ms=min(f.budget_ms for f in flows), flows=flows)


def merge_flows(flows: Iterable[Flow], tolerance: float = DEFAULT_TOLERANCE) -> list[Fragment]:
    """Fragments, sorted by (model, partition, budget)."""
    by_point: dict[tuple[str, int], list[Flow]] = defaultdict(list)
    for f in flows:
        by_point[(f.model, f.partition)].append(f)
    out: list[Fragment] = []
    for key in sorted(by_point):
        cluster: list[Flow] = []
        for f in sorted(by_point[key], key=lambda f: (f.budget_ms, f.id)):
            if cluster and f.budget_ms > cluster[0].budget_ms * (1 + tolerance):
                out.append(fragment_of(cluster))
                cluster = []
            cluster.append(f)
        out.append(fragment_of(cluster))
    return out


def collapse_by_partition(fragments: Iterable[Fragment]) -> list[Fragment]:
    """One fragment per partition point (rates add, budget is the smallest), sorted by p."""
    by_p: dict[int, list[Flow]] = defaultdict(list)
    for fr in fragments:
        by_p[fr.partition].extend(fr.flows)
    return [fragment_of(by_p[p]) for p in sorted(by_p)]
