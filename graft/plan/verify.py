"""The plan verifier: every rule a plan must satisfy, checked against workload and cost model.

``verify`` returns a list of violations, each a sentence naming the stage, route, GPU or
flow; an empty list means the plan is valid. Every rule comes from ``graft.plan.rules``:
spatial plans follow the 2e rule (duty cycles inside time-shared slices), temporal plans
(``nexus``) Nexus's duty-cycle rules; routes pay their hand-offs from the plan's placement;
every GPU holds at most its process limit and its memory.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from graft.cost.base import CostModel
from graft.errors import GraftInputError
from graft.models.catalog import get_model, model_names
from graft.plan import rules
from graft.plan.cluster import Placement
from graft.plan.plan import SPATIAL, TEMPORAL, Plan, Stage
from graft.workload.flows import Workload

REL_TOL = 1e-6
GIB = 2**30


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=1e-9)


def _le(a: float, b: float) -> bool:
    return a <= b * (1 + REL_TOL) + 1e-9


def verify(workload: Workload, plan: Plan, cost: CostModel, *, allow_partial: bool = False
           ) -> list[str]:
    errors: list[str] = []
    if plan.gpu_sharing not in (SPATIAL, TEMPORAL):
        return [f"gpu_sharing must be {SPATIAL!r} or {TEMPORAL!r}, got {plan.gpu_sharing!r}"]
    stages = plan.stage_by_id()
    if len(stages) != len(plan.stages):
        errors.append("stage ids are not unique")
    for st in plan.stages:
        errors.extend(_check_stage(st, plan.gpu_sharing, cost))
    errors.extend(_check_slices(plan))
    errors.extend(_check_gpus(plan, cost))
    errors.extend(_check_nodes(plan))
    errors.extend(_check_routes(workload, plan, stages, cost, allow_partial))
    return errors


def _check_nodes(plan: Plan) -> list[str]:
    """A plan placed on a cluster names a node of the cluster for each of its GPUs, and no
    node holds more GPUs than it has."""
    if plan.cluster is None:
        return []
    errs: list[str] = []
    if len(plan.gpu_nodes) != plan.gpus:
        errs.append(f"gpu_nodes names {len(plan.gpu_nodes)} nodes for the plan's {plan.gpus} "
                    "GPUs (one per GPU)")
    known = {n.name: n.gpus for n in plan.cluster.nodes}
    for name, placed in sorted(Counter(plan.gpu_nodes).items()):
        if name not in known:
            errs.append(f"gpu_nodes: no node {name!r} in the cluster")
        elif placed > known[name]:
            errs.append(f"node {name}: {placed} GPUs placed, it has {known[name]}")
    return errs


def _check_stage(st: Stage, sharing: str, cost: CostModel) -> list[str]:
    errs: list[str] = []
    name = f"stage {st.id}"
    if st.model not in model_names():
        return [f"{name}: unknown model {st.model!r}"]
    L = get_model(st.model).num_blocks
    if not 0 <= st.start < st.end <= L:
        return [f"{name}: blocks [{st.start}, {st.end}) are not within 0..{L}"]
    if st.batch < 1 or st.replicas < 1:
        errs.append(f"{name}: batch and replicas must be >= 1")
        return errs
    if len(st.gpus) != st.replicas:
        errs.append(f"{name}: {len(st.gpus)} gpus listed for {st.replicas} replicas")
    if not 0 < st.share <= 1 + REL_TOL:
        errs.append(f"{name}: share {st.share} is not in (0, 1]")
    run_share = 1.0 if sharing == TEMPORAL else st.run_share
    if sharing == SPATIAL and not any(_close(run_share, g) for g in cost.shares):
        errs.append(f"{name}: share {run_share} is not on {cost.name}'s share grid")
        return errs
    try:
        expected = cost.latency_ms(st.model, st.start, st.end, st.batch, run_share)
    except GraftInputError as e:
        return errs + [f"{name}: {e}"]
    if not _close(st.exec_ms, expected):
        errs.append(f"{name}: exec_ms {st.exec_ms} differs from the cost model's {expected}")
    period = st.period_ms
    if sharing == TEMPORAL and st.duty_cycle_ms is None:
        return errs + [f"{name}: a temporal stage needs duty_cycle_ms"]
    if sharing == SPATIAL and (st.duty_cycle_ms is None) != (st.slice is None):
        return errs + [f"{name}: a time-shared stage needs both slice and duty_cycle_ms"]
    if st.duty_cycle_ms is not None:
        if not _le(st.exec_ms, period):
            errs.append(f"{name}: exec_ms {st.exec_ms} exceeds its duty cycle {period}")
        part = run_share * st.exec_ms / period
        if not _close(st.share, part):
            errs.append(f"{name}: share {st.share} is not "
                        f"{'slice_share * ' if sharing == SPATIAL else ''}"
                        "exec_ms / duty_cycle_ms")
    capacity = rules.capacity_rps(st.replicas, st.batch, period)
    if not _le(st.rate, capacity):
        errs.append(f"{name}: rate {st.rate} req/s exceeds its capacity {capacity:.6g} req/s")
    return errs


def _check_slices(plan: Plan) -> list[str]:
    """Stages that take turns on one slice agree on it, and fill its duty cycle exactly."""
    errs: list[str] = []
    members: dict[str, list[Stage]] = defaultdict(list)
    for st in plan.stages:
        if st.slice is not None:
            members[st.slice].append(st)
    for name, group in sorted(members.items()):
        first = group[0]
        if any(st.replicas != 1 for st in group):
            errs.append(f"slice {name}: a time-shared stage must have one replica")
        if any(st.slice_share != first.slice_share or st.gpus != first.gpus
               or st.duty_cycle_ms != first.duty_cycle_ms for st in group):
            errs.append(f"slice {name}: members disagree on slice_share, gpus or duty cycle")
            continue
        busy = sum(st.exec_ms for st in group)
        if not _close(busy, first.duty_cycle_ms or 0.0):
            errs.append(f"slice {name}: duty cycle {first.duty_cycle_ms} is not the sum "
                        f"{busy:.6g} of its members' exec_ms")
    return errs


def _check_gpus(plan: Plan, cost: CostModel) -> list[str]:
    load: dict[int, float] = defaultdict(float)
    cycles: dict[int, set[float]] = defaultdict(set)
    for st in plan.stages:
        for g in st.gpus:
            if g < 0:
                return [f"stage {st.id}: gpu index {g} is negative"]
            load[g] += st.share
            if st.duty_cycle_ms is not None:
                cycles[g].add(round(st.duty_cycle_ms, 9))
    errs = [f"gpu {g}: shares sum to {s:.6f} > 1" for g, s in sorted(load.items())
            if not _le(s, 1.0)]
    if plan.gpu_sharing == TEMPORAL:
        errs += [f"gpu {g}: stages with different duty cycles {sorted(c)}"
                 for g, c in sorted(cycles.items()) if len(c) > 1]
    limits = cost.limits
    stages = plan.stage_by_id()
    on_gpu: dict[int, list[tuple[str, ...]]] = defaultdict(list)
    for p in plan.processes():
        if p.gpu is not None:
            on_gpu[p.gpu].append(p.stages)
    for g, procs in sorted(on_gpu.items()):
        if len(procs) > limits.max_processes:
            errs.append(f"gpu {g}: {len(procs)} processes, more than the "
                        f"{limits.max_processes} {cost.name} allows on one device")
        try:
            mem = sum(rules.process_memory_bytes(
                cost, [(s.model, s.start, s.end, s.batch)
                       for s in (stages[i] for i in dict.fromkeys(proc))]) for proc in procs)
        except (GraftInputError, IndexError):
            continue  # a stage with an unknown model or blocks: named by _check_stage
        if mem > limits.memory_bytes:
            errs.append(f"gpu {g}: its processes need {mem / GIB:.2f} GiB (contexts, weights, "
                        f"activations), more than the {limits.memory_bytes / GIB:.2f} GiB of "
                        "one device")
    return errs


def _check_routes(workload: Workload, plan: Plan, stages: dict[str, Stage], cost: CostModel,
                  allow_partial: bool) -> list[str]:
    errs: list[str] = []
    flows = workload.by_id()
    routed: dict[str, float] = defaultdict(float)
    seen: set[str] = set()
    unserved = {u.flow for u in plan.unserved}
    if unserved and not allow_partial:
        errs.append(f"flows {sorted(unserved)} are unserved (allowed only with --allow-partial)")
    for u in sorted(unserved - flows.keys()):
        errs.append(f"unserved flow {u!r} is not in the workload")
    for r in plan.routes:
        f = flows.get(r.flow)
        if f is None:
            errs.append(f"route for unknown flow {r.flow!r}")
            continue
        if r.flow in seen:
            errs.append(f"flow {r.flow}: more than one route")
            continue
        seen.add(r.flow)
        if r.flow in unserved:
            errs.append(f"flow {r.flow}: listed as unserved but has a route")
        chain = [stages.get(s) for s in r.stages]
        if not chain or any(s is None for s in chain):
            errs.append(f"flow {r.flow}: route names missing stages {list(r.stages)}")
            continue
        errs.extend(_check_chain(f, chain, r.latency_ms, r.handoff_ms, cost, plan.placement))
        for st in chain:
            routed[st.id] += f.rate
    for fid in flows:
        if fid not in seen and fid not in unserved:
            errs.append(f"flow {fid}: no route")
    for st in plan.stages:
        if not _close(st.rate, routed.get(st.id, 0.0)):
            errs.append(f"stage {st.id}: rate {st.rate} differs from the {routed[st.id]:.6g} "
                        "req/s routed through it")
    if plan.declared_totals is not None:
        total_share, gpus = plan.declared_totals
        if not _close(round(total_share, 6), round(plan.total_share, 6)):
            errs.append(f"total_share {total_share} is not the sum of share * replicas "
                        f"({plan.total_share:.6f})")
        if gpus != plan.gpus:
            errs.append(f"gpus {gpus} is not the number of GPUs the stages use ({plan.gpus})")
    return errs


def _check_chain(f, chain: list[Stage], latency_ms: float, handoff_ms: float,
                 cost: CostModel, placement: Placement | None = None) -> list[str]:
    errs: list[str] = []
    name = f"flow {f.id}"
    L = get_model(f.model).num_blocks
    if any(s.model != f.model for s in chain):
        return [f"{name}: route runs stages of another model"]
    if chain[0].start != f.partition:
        errs.append(f"{name}: route starts at block {chain[0].start}, partition is {f.partition}")
    for a, b in zip(chain, chain[1:]):
        if a.end != b.start:
            errs.append(f"{name}: stages {a.id} and {b.id} are not contiguous")
    if chain[-1].end != L:
        errs.append(f"{name}: route ends at block {chain[-1].end}, not {L}")
    if errs:
        return errs
    handoffs = sum(rules.route_handoffs_ms(cost, chain, placement))
    total = rules.route_time_ms(cost, chain, placement)
    if not _close(handoff_ms, handoffs):
        errs.append(f"{name}: handoff_ms {handoff_ms} is not the hand-offs' sum "
                    f"{handoffs:.6g} from the placement")
    if not _close(latency_ms, total):
        errs.append(f"{name}: latency_ms {latency_ms} is not the stages' and hand-offs' sum "
                    f"{total:.6g}")
    if not _le(total, f.budget_ms):
        errs.append(f"{name}: route takes {total:.6g} ms, over its budget {f.budget_ms} ms")
    return errs
