"""The ``nexus`` baseline: whole-GPU time slicing with squishy bin packing (Nexus, SOSP 2019).

Every distinct (model, partition) fragment is one *session* running [p, L) (no re-alignment)
whose latency SLO is the tightest budget among its flows. Sessions never get a fraction of
a GPU's SMs: a GPU runs its sessions one after another, each with the whole GPU, in a
repeating *duty cycle* ``d``. A session with batch ``B`` and execution time ``e(B)`` (at
share 1.0) serves ``B * 1000 / d`` req/s, and a request waits at most ``d + e`` (it arrives
just after its batch was cut, waits a cycle, then runs).

Simplified from Nexus's algorithm:

1. **Saturate.** The best a whole GPU does for a session is the batch with the highest
   throughput ``B * 1000 / e(B)`` among those with ``2 * e(B) <= budget`` (duty cycle = e).
   A session whose rate needs ``n > 1`` such GPUs becomes one stage with ``n`` replicas on
   ``n`` GPUs of its own, each carrying ``rate / n`` at the residual configuration of step 2
   (which is the saturated one when ``rate / n`` fills a GPU). A route names one chain per
   flow, so Nexus's split into saturated GPUs plus a residual session is not expressible;
   this costs at most the residual's squishing, and no more GPUs than ``ceil``.
2. **Residual.** A session that fits one GPU picks the batch whose duty cycle
   ``d = min(B * 1000 / rate, budget - e(B))`` leaves it the least occupancy ``e / d``
   (``e <= d``); this is Nexus's "largest batch within the SLO".
3. **Squish.** Residual sessions, by occupancy descending, each merge into the existing GPU
   where the merged occupancy is highest (best fit), or open a new GPU. A merged GPU runs
   at the least duty cycle of its members; each member's batch shrinks to the smallest grid
   batch that still carries its rate in that cycle; the merge is feasible when every member
   keeps ``d + e <= budget`` and the members' execution times fit in one cycle (and memory
   and the process limit allow).

Every stage is temporal: ``share = exec_ms / duty_cycle_ms`` with ``exec_ms`` at share 1.0.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

from graft.cost.base import CostModel
from graft.errors import GraftInputError
from graft.models.catalog import get_model
from graft.plan import rules
from graft.plan.plan import TEMPORAL, Plan, Route, Stage, Unserved
from graft.plan.rules import EPS
from graft.planner.lower_bound import lower_bound_share
from graft.planner.servable import split_servable
from graft.workload.flows import Flow, Workload

log = logging.getLogger(__name__)


@dataclass
class Session:
    """One fragment [start, L) of ``model`` with its flows, rate and tightest budget."""

    model: str
    start: int
    end: int
    flows: list[Flow]
    budget_ms: float
    #: execution time at share 1.0 for each batch of the cost model's grid
    exec_by_batch: dict[int, float]

    @property
    def rate(self) -> float:
        return sum(f.rate for f in self.flows)


@dataclass(frozen=True)
class Slot:
    """A session's configuration on a GPU: its batch, execution time and duty cycle."""

    batch: int
    exec_ms: float
    duty_ms: float

    @property
    def occupancy(self) -> float:
        return self.exec_ms / self.duty_ms


@dataclass
class _Gpu:
    duty_ms: float
    members: list[tuple[Session, Slot]] = field(default_factory=list)

    @property
    def occupancy(self) -> float:
        return sum(s.exec_ms for _, s in self.members) / self.duty_ms


def saturated_throughput(session: Session) -> float:
    """Most req/s one whole GPU serves for ``session`` (duty cycle = e, 2e within budget);
    0 when no batch fits."""
    best = 0.0
    for b, e in session.exec_by_batch.items():
        if rules.stage_time_ms(e) <= session.budget_ms * (1 + EPS):
            best = max(best, rules.capacity_rps(1, b, e))
    return best


def residual_slot(session: Session, rate: float) -> Slot | None:
    """The least-occupancy configuration carrying ``rate`` on one time-sliced GPU."""
    best: Slot | None = None
    for b, e in sorted(session.exec_by_batch.items()):
        # the longest cycle that still carries ``rate`` and keeps d + e within budget
        d = min(rules.longest_period_ms(b, rate), session.budget_ms - e)
        if e > d * (1 + EPS):
            continue
        d = max(d, e)  # e within EPS of d: run back to back
        slot = Slot(batch=b, exec_ms=e, duty_ms=d)
        if best is None or slot.occupancy <= best.occupancy:
            best = slot
    return best


def resized_slot(session: Session, duty_ms: float) -> Slot | None:
    """The session's configuration at duty cycle ``duty_ms``: the smallest grid batch that
    carries its rate, if it keeps the session within budget."""
    need = rules.batch_needed(session.rate, duty_ms)
    for b, e in sorted(session.exec_by_batch.items()):
        if b >= need * (1 - EPS):
            ok = (rules.stage_time_ms(e, duty_ms) <= session.budget_ms * (1 + EPS)
                  and e <= duty_ms * (1 + EPS))
            return Slot(batch=b, exec_ms=e, duty_ms=duty_ms) if ok else None
    return None


@dataclass(frozen=True)
class NexusPlanner:
    name: str = "nexus"

    def plan(self, workload: Workload, cost: CostModel, *, allow_partial: bool = False) -> Plan:
        t0 = time.perf_counter()
        served, unserved = split_servable(workload, cost, allow_partial=allow_partial)
        served, too_tight = _whole_gpu_servable(served, cost, allow_partial)
        sessions = _sessions(served, cost)
        big: list[tuple[Session, Slot, int]] = []
        residual: list[tuple[Session, Slot]] = []
        for s in sessions:
            n = max(1, math.ceil(s.rate / saturated_throughput(s) * (1 - EPS)))
            slot = residual_slot(s, s.rate / n)
            assert slot is not None, "the saturated batch carries rate / n within budget"
            if n > 1:
                big.append((s, slot, n))
            else:
                residual.append((s, slot))
        gpus = squish(residual, cost)
        plan = _build(self.name, cost, big, gpus, served, unserved + too_tight)
        log.debug("nexus: %d sessions, %d gpus", len(sessions), plan.gpus)
        return plan.with_info(sessions=len(sessions),
                              planning_s=round(time.perf_counter() - t0, 4))


def _whole_gpu_servable(flows: list[Flow], cost: CostModel, allow_partial: bool
                        ) -> tuple[list[Flow], tuple[Unserved, ...]]:
    """Flows whose budget fits ``2 e`` of their fragment at batch 1 on a whole GPU.

    ``split_servable`` already checked the fastest point of the whole grid; this differs
    only for a cost model whose fastest point is not at share 1.0.
    """
    ok: list[Flow] = []
    unserved: list[Unserved] = []
    needs: dict[tuple[str, int], float] = {}
    for f in flows:
        key = (f.model, f.partition)
        if key not in needs:
            end = get_model(f.model).num_blocks
            needs[key] = rules.stage_time_ms(min(
                float(cost.latency_ms(f.model, f.partition, end, b, 1.0)) for b in cost.batches))
        need = needs[key]
        if f.budget_ms * (1 + EPS) >= need:
            ok.append(f)
        elif allow_partial:
            unserved.append(Unserved(flow=f.id, needed_budget_ms=round(need, 6)))
        else:
            raise GraftInputError(
                f"budget {f.budget_ms:g} ms is below the {need:.3f} ms a whole-GPU "
                f"{f.model} fragment from block {f.partition} needs under {cost.name}",
                field="budget_ms", flow=f.id)
    return ok, tuple(unserved)


def _sessions(flows: list[Flow], cost: CostModel) -> list[Session]:
    by_fragment: dict[tuple[str, int], list[Flow]] = defaultdict(list)
    for f in flows:
        by_fragment[(f.model, f.partition)].append(f)
    out = []
    for (model, p), fl in sorted(by_fragment.items()):
        end = get_model(model).num_blocks
        exec_by_batch = {b: float(cost.latency_ms(model, p, end, b, 1.0)) for b in cost.batches}
        out.append(Session(model, p, end, fl, min(f.budget_ms for f in fl), exec_by_batch))
    return out


def squish(residual: list[tuple[Session, Slot]], cost: CostModel) -> list[_Gpu]:
    """Squishy bin packing: merge each session into the best-fitting GPU, or open one."""
    gpus: list[_Gpu] = []
    order = sorted(residual, key=lambda t: (-t[1].occupancy, t[0].model, t[0].start))
    for session, slot in order:
        best_index, best_occ = -1, -1.0
        best_members: list[tuple[Session, Slot]] = []
        for i, gpu in enumerate(gpus):
            members = _merged(gpu, session, slot, cost)
            if members is None:
                continue
            occ = sum(sl.exec_ms for _, sl in members) / members[0][1].duty_ms
            if occ > best_occ + 1e-12:
                best_index, best_occ, best_members = i, occ, members
        if best_index < 0:
            gpus.append(_Gpu(slot.duty_ms, [(session, slot)]))
        else:
            gpus[best_index] = _Gpu(best_members[0][1].duty_ms, best_members)
    return gpus


def _merged(gpu: _Gpu, session: Session, slot: Slot, cost: CostModel
            ) -> list[tuple[Session, Slot]] | None:
    """The GPU's members plus ``session`` at their common (least) duty cycle, or None."""
    limits = cost.limits
    if len(gpu.members) + 1 > limits.max_processes:
        return None
    duty = min(gpu.duty_ms, slot.duty_ms)
    members: list[tuple[Session, Slot]] = []
    for s in [m for m, _ in gpu.members] + [session]:
        new = resized_slot(s, duty)
        if new is None:
            return None
        members.append((s, new))
    if sum(sl.exec_ms for _, sl in members) > duty * (1 + EPS):
        return None
    memory = sum(rules.process_memory_bytes(cost, [(s.model, s.start, s.end, sl.batch)])
                 for s, sl in members)
    return members if memory <= limits.memory_bytes else None


def _build(name: str, cost: CostModel, big: list[tuple[Session, Slot, int]],
           gpus: list[_Gpu], served: list[Flow], unserved: tuple[Unserved, ...]) -> Plan:
    placed: list[tuple[Session, Slot, int, tuple[int, ...]]] = []
    next_gpu = 0
    for s, slot, n in big:
        placed.append((s, slot, n, tuple(range(next_gpu, next_gpu + n))))
        next_gpu += n
    for gpu in gpus:
        placed += [(s, slot, 1, (next_gpu,)) for s, slot in gpu.members]
        next_gpu += 1
    placed.sort(key=lambda t: (t[0].model, t[0].start, t[0].end, t[3]))
    for s, slot, _, _ in placed:
        mem = rules.process_memory_bytes(cost, [(s.model, s.start, s.end, slot.batch)])
        if mem > cost.limits.memory_bytes:
            raise GraftInputError(
                f"a replica of {s.model} [{s.start}, {s.end}) at batch {slot.batch} needs "
                f"{mem / 2**30:.2f} GiB, more than the "
                f"{cost.limits.memory_bytes / 2**30:.2f} GiB of one device")
    stages: list[Stage] = []
    routes: list[Route] = []
    for n, (s, slot, reps, where) in enumerate(placed):
        st = Stage(
            id=f"{s.model}/{s.start}-{s.end}/{n}",
            model=s.model, start=s.start, end=s.end, batch=slot.batch,
            share=slot.exec_ms / slot.duty_ms, replicas=reps, exec_ms=slot.exec_ms,
            rate=round(s.rate, 9), gpus=where, duty_cycle_ms=slot.duty_ms,
        )
        stages.append(st)
        routes += [Route(flow=f.id, stages=(st.id,), latency_ms=st.time_ms) for f in s.flows]
    order = {f.id: i for i, f in enumerate(served)}
    routes.sort(key=lambda r: order[r.flow])
    return Plan(
        planner=name, cost_model=cost.name, stages=tuple(stages), routes=tuple(routes),
        unserved=unserved, gpu_sharing=TEMPORAL,
        lower_bound_share=lower_bound_share(served, cost),
    )
