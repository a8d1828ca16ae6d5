"""The lower bound every plan reports.

For every block of every model: the total request rate that passes through it times the
least GPU-seconds per request that block can cost at any batch and share
(``min share * latency / batch``), summed. No plan that runs every block of every request
can use less GPU than this, up to the fixed per-stage overhead a cost model charges once
per stage (which the bound counts once per block).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from graft.cost.base import CostModel
from graft.models.catalog import get_model
from graft.planner.configs import segment_options
from graft.workload.flows import Flow


def lower_bound_share(flows: Iterable[Flow], cost: CostModel) -> float:
    rate_from: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    for f in flows:
        rate_from[f.model][f.partition] += f.rate
    total = 0.0
    for model, by_p in rate_from.items():
        rate = 0.0
        for block in range(get_model(model).num_blocks):
            rate += by_p.get(block, 0.0)
            if rate > 0:
                total += rate * segment_options(cost, model, block, block + 1).min_share_seconds
    return total
