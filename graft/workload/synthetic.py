"""Seeded synthetic workloads: the demo's built-in workload and the benchmark suite's.

Budgets are drawn on each model's own time scale: ``needed(0) * U(lo, hi)``, where
``needed(0)`` is the least server budget the whole model needs on the cost model's device
(``needed_budget_ms`` at partition 0). A client's server budget is what its end-to-end SLO
leaves after device time and upload, so it does not shrink with the server's share of the
model; every budget is kept at least ``MIN_SLACK`` times what its own fragment needs, so
every generated flow is servable.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from graft.cost.base import CostModel
from graft.models.catalog import get_model
from graft.plan.rules import needed_budget_ms
from graft.workload.flows import Flow, Workload

MIN_SLACK = 1.2
DEMO_MODELS = ("vgg16", "resnet50", "mobilenet_v2", "inception_v3", "vit_b_16")


@dataclass(frozen=True)
class WorkloadShape:
    """How heterogeneous a synthetic workload is.

    ``partitions``: how many distinct partition points each model's flows use (1 is
    homogeneous). ``budget_slack``: budgets are ``needed(0) * U(lo, hi)``; equal bounds give
    one budget per model. ``rate``: per-flow request rate bounds (req/s).
    """

    partitions: int
    budget_slack: tuple[float, float]
    rate: tuple[float, float] = (1.0, 30.0)


HOMOGENEOUS = WorkloadShape(partitions=1, budget_slack=(3.0, 3.0))
MILD = WorkloadShape(partitions=3, budget_slack=(2.5, 4.0))
HETEROGENEOUS = WorkloadShape(partitions=8, budget_slack=(1.3, 6.0))
EXTREME = WorkloadShape(partitions=100, budget_slack=(1.1, 10.0))
#: High rates and budgets spread widely inside every fragment: where one instance per
#: fragment at its tightest budget wastes most, and per-fragment budget groups pay off.
SPREAD = WorkloadShape(partitions=7, budget_slack=(1.05, 15.0), rate=(20.0, 200.0))

SHAPES = {"homogeneous": HOMOGENEOUS, "mild": MILD, "heterogeneous": HETEROGENEOUS,
          "extreme": EXTREME, "spread": SPREAD}


def synthetic_workload(
    cost: CostModel,
    n_flows: int,
    shape: WorkloadShape,
    *,
    models: tuple[str, ...] = DEMO_MODELS,
    seed: int = 0,
) -> Workload:
    rng = random.Random(seed)
    points: dict[str, list[int]] = {}
    for m in models:
        L = get_model(m).num_blocks
        k = min(shape.partitions, L)
        # the first blocks are where clients split most (cheap on-device heads)
        points[m] = sorted(rng.sample(range(L), k)) if k > 1 else [rng.randrange(L // 2)]
    need = {(m, p): needed_budget_ms(cost, m, p) for m in models for p in [0, *points[m]]}
    flows = []
    for i in range(n_flows):
        m = models[i % len(models)]
        p = rng.choice(points[m])
        slack = rng.uniform(*shape.budget_slack)
        flows.append(Flow(id=f"f{i}", model=m, partition=p,
                          rate=round(rng.uniform(*shape.rate), 3),
                          budget_ms=round(max(need[(m, 0)] * slack,
                                              need[(m, p)] * MIN_SLACK), 3)))
    return Workload(tuple(flows))


def demo_workload(cost: CostModel, seed: int = 0) -> Workload:
    """The built-in heterogeneous workload ``make demo`` plans: 200 flows over five models."""
    return synthetic_workload(cost, 200, HETEROGENEOUS, seed=seed)
