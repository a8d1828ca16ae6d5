"""Every planner on one workload, side by side: what ``make demo`` and the benchmark print."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from graft.cost.base import CostModel
from graft.errors import GraftInputError
from graft.plan.verify import verify
from graft.planner.registry import make_planner
from graft.workload.flows import Workload

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome:
    planner: str
    total_share: float | None
    gpus: int | None
    lower_bound_share: float | None
    planning_s: float
    valid: bool
    note: str = ""


def run_planners(workload: Workload, cost: CostModel, planners: list[str]) -> list[Outcome]:
    out = []
    for name in planners:
        planner = make_planner(name)
        t0 = time.perf_counter()
        try:
            plan = planner.plan(workload, cost)
        except GraftInputError as e:  # e.g. optimal refusing a workload too large for it
            out.append(Outcome(name, None, None, None, time.perf_counter() - t0, False, str(e)))
            continue
        dt = time.perf_counter() - t0
        errors = verify(workload, plan, cost)
        if errors:
            log.error("%s produced an invalid plan: %s", name, errors[:3])
        out.append(Outcome(name, plan.total_share, plan.gpus, plan.lower_bound_share, dt,
                           not errors, str(plan.info.get("note", ""))))
    return out


def format_table(outcomes: list[Outcome], baseline: str = "gslice", unit: str = "GPU") -> str:
    """A markdown table of ``outcomes``; ``unit``: what the plans' devices are called
    (``graft.wording.device_word``)."""
    base = next((o.total_share for o in outcomes if o.planner == baseline and o.total_share),
                None)
    lines = [
        f"| planner | total share | {unit}s | vs {baseline} | vs lower bound | plan time (s) "
        "| valid |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for o in outcomes:
        if o.total_share is None:
            lines.append(f"| {o.planner} | - | - | - | - | {o.planning_s:.3f} | {o.note} |")
            continue
        vs_base = f"{o.total_share / base:.3f}" if base else "-"
        vs_lb = f"{o.total_share / o.lower_bound_share:.3f}" if o.lower_bound_share else "-"
        lines.append(f"| {o.planner} | {o.total_share:.2f} | {o.gpus} | {vs_base} | {vs_lb} | "
                     f"{o.planning_s:.3f} | {'yes' if o.valid else 'NO'} |")
    return "\n".join(lines)
