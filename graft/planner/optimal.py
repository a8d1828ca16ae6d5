"""The ``optimal`` planner: graft's problem as a mixed-integer program, solved by HiGHS.

For small workloads only: it measures how far the heuristics are from the optimum.

**What the search covers** (``slices=True``, the default: the rules graft plans by).

- *2e stages*: a segment [a, b) between two cut points, at one (batch B, share g) point of
  the cost model's grid, with any number of replicas; a request spends ``2 e`` in it
  (``rules.stage_time_ms``); ``replicas * B * 1000 / e`` must carry its rate.
- *Time-shared slices* (``graft.planner.optimal_slices``): up to ``max_slices`` slices (2 by
  default; more where a start plan has more), each of 2 to ``max_members`` (8, graft's
  ``timeshare.MAX_MEMBERS``) single-replica members at the slice's share, any mix of
  segments and batches, each (segment, batch) once per slice; duty cycle ``d`` = the
  members' ``e`` summed, a request spends ``d + e`` in a member, which needs
  ``B >= rate * d / 1000``; the slice costs its share.
- *Hand-offs*: every stage not ending its model pays its batch's hand-off to the next stage
  across GPUs (``rules.planned_handoff_ms``: the planned worst case, as graft charges it; the
  placement can only make it cheaper, and within one slice it is free).
- *Routes*: flows of one (model, partition, budget) are one *commodity* on one route (as in
  every other planner); a route's stage times and hand-offs sum to at most its budget.
- *Cut points*: the workload's partition points of a model and its last block L
  (``cut_at_all_blocks`` adds every block in between: a larger space than graft's).

Not covered: packing (memory, the process limit, the GPU count: settled after, by
``assemble_plan``, as for graft); temporal sharing of whole GPUs (``nexus``); a commodity
split over routes. ``slices=False`` solves the 2e-only problem (``plan.info["problem"]``
says which). graft's own search is a subset of the same rules: budget classes re-aligned as
staircases or served by private budget groups (``group``, ``realign``, on a discretised
budget grid), slack handed back stage by stage (``slack``), then greedy slices among its
single-replica stages, each member within its own share of its routes' slack
(``timeshare``); on small workloads, a bounded local search over other groupings of the
fragments, each priced after those steps (``regroup``). So every graft plan that keeps each
commodity on one route is a feasible point here, and it is given as a start (any other
start plan is still a fallback: the planner never returns a plan costing more than graft's).

**2e part.** A *stage* is a segment with one (B, g) option, execution time e and per-replica
capacity ``cap = B * 1000 / e``. Variables ``x[c, s, k]`` binary (commodity c passes stage
(segment s, option k)) and ``n[s, k]`` integer (its replicas). Each commodity's arcs (``x``
and the slice members' ``y``) form a path from its partition point to L (flow
conservation); capacity ``sum_c rate_c x[c,s,k] <= cap_k n[s,k]``; latency: the route's
stage times plus hand-offs ``<= budget_c``; and ``r_ck x[c,s,k] <= n[s,k]`` with ``r_ck``
the replicas commodity c needs alone (implied, but it tightens the relaxation). Minimise
``sum g_k n[s,k] + sum of the slices' shares``. A segment may hold several stages with
different options, never two with the same option (merging them never costs more).

**Solving.** First the 2e MILP (at most ``first_phase`` of ``time_limit_s`` when slices are
searched), started from the better of gslice's and graft's (without slices) plans; then the
MILP with one slice (half the time left), then with ``max_slices`` (the rest), each started
from the best plan known so far: gslice's, graft's with and without slices, the 2e optimum,
the 2e optimum with graft's greedy slices (``timeshare.share_slices``), the one-slice
optimum, all mapped onto the formulation. The one-slice MILP is smaller and its relaxation
tighter, so it finds and proves one-slice plans faster. A run stopped by the time limit thus
returns a plan no worse than any start (if HiGHS refused a start, that start plan itself),
and ``plan.info`` gives the last solve's status, the gap and dual bound HiGHS proved, the
objective, and the earlier solves' facts. Every total share is a multiple of the share
grid's step, so a gap below one step proves optimality. The relaxation of the slice part is
weak (a slice's duty cycle multiplies route choices), so larger workloads often stop at the
time limit with a loose bound: the status says so.

**Exact pruning (2e).** ``x[c, s, k]`` exists only when the fastest possible chain from the
commodity's point to a, plus ``2 e_k``, plus the fastest chain from b to L fits its budget.
An option k of segment s is dropped when, for every rate R a stage of option k can carry (a
sum of a subset of the rates of the commodities whose budgets admit k), an option j kept
before it in e order is at least as fast and costs no more at R (``g ceil(R / cap)``): any
plan using k becomes one using j at no more cost. Past-knee shares (more share, no faster)
go first. The slice part's pruning is in ``graft.planner.optimal_slices``.
"""

from __future__ import annotations

import logging
import math
import random
import time
from collections import defaultdict
from dataclasses import dataclass, field, replace

import numpy as np

from graft.cost.base import CostModel
from graft.errors import GraftInputError
from graft.models.catalog import get_model
from graft.plan import rules
from graft.plan.plan import Plan
from graft.plan.rules import EPS, replicas_needed
from graft.plan.verify import verify
from graft.planner.assemble import StageDraft, assemble_plan
from graft.planner.configs import StageConfig, segment_options
from graft.planner.graft_planner import GraftPlanner
from graft.planner.gslice import GslicePlanner
from graft.planner.optimal_slices import (
    PlannedMember,
    SliceCols,
    add_slices,
    planned_slices,
    slice_drafts,
    slice_space,
    slice_start,
)
from graft.planner.servable import split_servable
from graft.planner.timeshare import MAX_MEMBERS, share_slices
from graft.workload.flows import Flow, Workload

try:  # the plain binding: highspy.Highs prints a banner to stdout when it is created
    from highspy._core import _Highs as _HighsSolver
except ImportError:  # pragma: no cover - other highspy layouts
    from highspy import Highs as _HighsSolver

log = logging.getLogger(__name__)

DEFAULT_MAX_FRAGMENTS = 12
DEFAULT_MAX_VARIABLES = 200_000
DEFAULT_MAX_SLICES = 2
#: HiGHS's presolve rule bit for probing
_PROBING = 1 << 15


@dataclass
class Commodity:
    """Flows of one model entering at one partition point with one budget."""

    model: str
    partition: int
    budget_ms: float
    flows: list[Flow] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return sum(f.rate for f in self.flows)


@dataclass
class SegmentChoices:
    """The kept options of one segment [start, end) of ``model``."""

    model: str
    start: int
    end: int
    batch: np.ndarray
    share: np.ndarray
    exec_ms: np.ndarray
    #: planned time a request spends in the stage: 2e plus the planned hand-off
    time_ms: np.ndarray
    handoff_ms: np.ndarray

    @property
    def capacity(self) -> np.ndarray:
        return rules.capacity_rps(1, self.batch, self.exec_ms)


@dataclass
class Formulation:
    """The MILP in HiGHS's row-wise form, and what each column means.

    Routes stay open while columns are added (``add_arc``); ``close_routes`` then writes
    each commodity's flow conservation and latency rows.
    """

    cost: list[float] = field(default_factory=list)
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    rows: list[tuple[list[int], list[float], float, float]] = field(default_factory=list)
    #: column of n[s, k] -> (segment index, option index)
    stage_cols: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: column of x[c, s, k] -> (commodity index, segment index, option index)
    route_cols: dict[int, tuple[int, int, int]] = field(default_factory=dict)
    #: per commodity: (column, from block, to block) of every arc its route may take
    arcs: dict[int, list[tuple[int, int, int]]] = field(
        default_factory=lambda: defaultdict(list))
    #: per commodity: (column, coefficient) terms of its route time
    latency: dict[int, list[tuple[int, float]]] = field(
        default_factory=lambda: defaultdict(list))

    def add_col(self, cost: float, lower: float, upper: float, integer: bool) -> int:
        self.cost.append(cost)
        self.lower.append(lower)
        self.upper.append(upper)
        self.integer.append(integer)
        return len(self.cost) - 1

    def add_row(self, idx: list[int], val: list[float], lo: float, hi: float) -> None:
        self.rows.append((idx, val, lo, hi))

    def add_arc(self, ci: int, col: int, start: int, end: int,
                latency: list[tuple[int, float]]) -> None:
        """Binary ``col`` is an arc [start, end) of commodity ``ci``'s route, adding the
        ``latency`` terms to its route time."""
        self.arcs[ci].append((col, start, end))
        self.latency[ci].extend(latency)

    @property
    def binaries(self) -> int:
        return sum(1 for i, u in zip(self.integer, self.upper) if i and u <= 1)


class _TooLarge(GraftInputError):
    """A slice phase's MILP exceeds ``max_variables``."""


@dataclass
class _Phase:
    """One MILP solve: its formulation, slice columns, solution and facts."""

    form: Formulation
    slices: SliceCols | None
    values: np.ndarray
    info: dict
    drafts: list[StageDraft]


@dataclass(frozen=True)
class OptimalPlanner:
    name: str = "optimal"
    #: time limit over all solves (the 2e MILP, then with slices): a run stopped by it
    #: returns its best plan (never worse than any start) with the gap proved
    time_limit_s: float = 8.0
    #: part of the time limit the 2e MILP may take when slices are searched too
    first_phase: float = 0.4
    mip_rel_gap: float = 1e-4
    max_fragments: int = DEFAULT_MAX_FRAGMENTS
    max_variables: int = DEFAULT_MAX_VARIABLES
    #: also cut at blocks that are no flow's partition point (a larger space than graft's)
    cut_at_all_blocks: bool = False
    #: search time-shared slices too (graft's rules); False: the 2e-only problem
    slices: bool = True
    #: slice instances in the MILP (raised to the most slices any start plan has)
    max_slices: int = DEFAULT_MAX_SLICES
    #: most members per slice (graft's limit)
    max_members: int = MAX_MEMBERS

    def plan(self, workload: Workload, cost: CostModel, *, allow_partial: bool = False) -> Plan:
        t0 = time.perf_counter()
        served, unserved = split_servable(workload, cost, allow_partial=allow_partial)
        commodities = commodities_of(served)
        if len(commodities) > self.max_fragments:
            raise GraftInputError(
                f"optimal solves at most {self.max_fragments} fragments (distinct model, "
                f"partition and budget); this workload has {len(commodities)}")
        segments, reach = candidate_segments(commodities, cost, self.cut_at_all_blocks)
        plans = self._baselines(workload, cost)
        first_limit = self.time_limit_s * (self.first_phase if self.slices else 1.0)
        phase = self._phase(commodities, segments, reach, cost, plans, 0, first_limit)
        facts: dict = {"problem": "2e stages"}
        if self.slices:
            phase, facts = self._slice_phases(phase, commodities, segments, reach, cost,
                                              plans, served, unserved)
        plan = self._checked_plan(phase, workload, commodities, cost, served, unserved, plans)
        facts.update(
            fragments=len(commodities),
            options=int(sum(len(s.exec_ms) for s in segments)),
            planning_s=round(time.perf_counter() - t0, 4),
        )
        return plan.with_info(**{**phase.info, **facts})

    def _slice_phases(self, phase: _Phase, commodities: list[Commodity],
                      segments: list[SegmentChoices], reach: dict, cost: CostModel,
                      plans: list[tuple[str, Plan]], served: list[Flow], unserved: tuple
                      ) -> tuple[_Phase, dict]:
        """After the 2e MILP (``phase``): the MILP with one slice, then (``max_slices`` >
        1) with ``max_slices``, each started from every plan found so far (appended to
        ``plans``). The one-slice MILP is smaller and its relaxation tighter: it finds and
        proves one-slice plans faster, and hands them on as starts."""
        facts: dict = {"problem": "2e stages + time-shared slices",
                       "first_phase": _summary(phase.info)}
        plans.append(("optimal-2e", assemble_plan(self.name, cost, phase.drafts, served,
                                                  unserved)))
        greedy = share_slices(with_room(phase.drafts, commodities), cost)
        plans.append(("optimal-2e+greedy-slices",
                      assemble_plan(self.name, cost, greedy, served, unserved)))
        spent = phase.info["solve_s"]
        counts = sorted({1, max(1, self.max_slices)})
        for n, count in enumerate(counts):
            last = n == len(counts) - 1
            limit = max((self.time_limit_s - spent) * (1.0 if last else 0.5),
                        0.05 * self.time_limit_s)
            try:
                phase = self._phase(commodities, segments, reach, cost, plans, count, limit)
            except _TooLarge as e:
                log.warning("optimal: %s; keeping the plan of the smaller MILP", e)
                facts["problem"] += f" (not solved: {e})"
                break
            spent += phase.info["solve_s"]
            if not last:
                facts["one_slice_phase"] = _summary(phase.info)
                plans.append(("optimal-1-slice", assemble_plan(self.name, cost, phase.drafts,
                                                               served, unserved)))
        facts["solve_s"] = round(spent, 4)
        return phase, facts

    def _phase(self, commodities: list[Commodity], segments: list[SegmentChoices],
               reach: dict, cost: CostModel, plans: list[tuple[str, Plan]],
               slices: int, limit_s: float) -> _Phase:
        """Formulate (with up to ``slices`` slice instances, or none), start from the best of
        ``plans``, and solve."""
        form = formulate(commodities, segments, reach)
        cols = None
        if slices:
            cols = self._add_slices(form, cost, commodities, segments, reach, plans, slices)
        close_routes(form, commodities)
        if len(form.cost) > self.max_variables:
            error = _TooLarge if slices else GraftInputError
            raise error(f"optimal solves at most {self.max_variables} variables; this "
                        f"workload needs {len(form.cost)}"
                        + (f" with {slices} time-shared slices" if slices else ""))
        starts = [(name, start_from(p, cost, form, commodities, segments, cols))
                  for name, p in plans]
        starts = [(n, x) for n, x in starts if x is not None]
        start_name, start = min(starts, default=(None, None),
                                key=lambda t: float(np.dot(form.cost, t[1])))
        # HiGHS's probing can stall long past the time limit on the slice part's big-M rows
        values, info = self._solve(form, start, share_step(cost), limit_s,
                                   probing=not slices)
        drafts = drafts_from(values, form, commodities, segments)
        if cols is not None:
            drafts += slice_drafts(values, cols, commodities, segments)
        info.update(
            variables=len(form.cost),
            binaries=form.binaries,
            constraints=len(form.rows),
            slice_instances=0 if cols is None else cols.space.instances,
            slice_members=0 if cols is None else len(cols.space.members),
            slices_used=len({d.slice_key for d in drafts if d.slice_key is not None}),
            start=start_name,
            start_objective=(None if start is None
                             else round(float(np.dot(form.cost, start)), 6)),
        )
        return _Phase(form, cols, values, info, drafts)

    def _checked_plan(self, phase: _Phase, workload: Workload, commodities: list[Commodity],
                      cost: CostModel, served: list[Flow], unserved: tuple,
                      plans: list[tuple[str, Plan]]) -> Plan:
        """The solution as a plan, checked by the verifier; where it breaks a rule (numerical
        trouble) or costs more than a start plan (a start HiGHS refused), the best valid
        start plan instead."""
        plan = assemble_plan(self.name, cost, phase.drafts, served, unserved)
        problems = verify(workload, plan, cost, allow_partial=True)
        cheaper = [(n, p) for n, p in sorted(plans, key=lambda t: t[1].total_share)
                   if problems or p.total_share < plan.total_share - 1e-9]
        best = next(((n, p) for n, p in cheaper
                     if not verify(workload, p, cost, allow_partial=True)), None)
        if problems:
            log.warning("optimal: the solution breaks the rules (%s); returning %s's plan",
                        "; ".join(problems[:3]), best[0] if best else "it anyway")
        if best is None:
            if plan.total_share > phase.info["objective"] * (1 + 1e-6) + 1e-9:
                log.warning("optimal: plan total %.6f exceeds the MILP objective %.6f",
                            plan.total_share, phase.info["objective"])
            return plan
        why = "; ".join(problems[:3]) if problems else "cheaper than the MILP's plan"
        phase.info["fallback"] = f"{best[0]}: {why}"
        return replace(best[1], planner=self.name, info={})

    def _baselines(self, workload: Workload, cost: CostModel) -> list[tuple[str, Plan]]:
        """The plans HiGHS may start from: gslice's, graft's without slices, and graft's."""
        makers = {"gslice": GslicePlanner(), "graft-2e": GraftPlanner(time_share=False)}
        if self.slices:
            makers["graft"] = GraftPlanner()
        plans = []
        for name, planner in makers.items():
            try:
                plans.append((name, planner.plan(workload, cost, allow_partial=True)))
            except (GraftInputError, ValueError) as e:
                log.debug("optimal: no start from %s: %s", name, e)
        return plans

    def _add_slices(self, form: Formulation, cost: CostModel, commodities: list[Commodity],
                    segments: list[SegmentChoices], reach: dict,
                    plans: list[tuple[str, Plan]], instances: int) -> SliceCols | None:
        """The slice part with ``instances`` slices (or as many as a plan has): shares pruned
        by the cheapest plan whose routes the MILP can take, holding every slice of those
        plans (so each stays a feasible point)."""
        upper = 1.0
        planned: list[list[PlannedMember]] = []
        seg_of = {(s.model, s.start, s.end): si for si, s in enumerate(segments)}
        for _, p in plans:
            route_of = routes_by_commodity(p, commodities)
            mine = None if route_of is None else planned_slices(p, route_of, seg_of)
            if mine is None:
                continue
            upper = min(upper, p.total_share)
            planned += mine
            instances = max(instances, len(mine))
        space = slice_space(commodities, segments, reach, cost, upper_share=upper,
                            instances=instances, max_members=self.max_members,
                            planned=planned)
        return None if space is None else add_slices(form, space, commodities, segments)

    def _solve(self, form: Formulation, start: np.ndarray | None, step: float,
               limit_s: float, probing: bool = True) -> tuple[np.ndarray, dict]:
        import highspy

        h = _HighsSolver()
        h.setOptionValue("output_flag", False)
        if not probing:
            h.setOptionValue("presolve_rule_off", _PROBING)
        h.setOptionValue("time_limit", float(limit_s))
        h.setOptionValue("mip_rel_gap", float(self.mip_rel_gap))
        h.setOptionValue("mip_feasibility_tolerance", 1e-9)
        if step:  # every objective is a multiple of step: a smaller gap proves optimality
            h.setOptionValue("mip_abs_gap", step * (1 - 1e-6))
        h.passModel(_to_lp(form, highspy))
        _stop_at(h, time.perf_counter() + limit_s * 1.05 + 0.2)
        if start is not None:
            sol = highspy.HighsSolution()
            sol.col_value = start
            sol.value_valid = True
            h.setSolution(sol)
        t = time.perf_counter()
        h.run()
        solve_s = time.perf_counter() - t
        status = h.modelStatusToString(h.getModelStatus())
        if status == "Interrupted by user":  # our deadline (``_stop_at``)
            status = "Time limit reached"
        hinfo = h.getInfo()
        if hinfo.primal_solution_status != 2:  # kSolutionStatusFeasible
            raise GraftInputError(
                f"optimal found no solution within its {limit_s:g} s limit "
                f"(HiGHS status: {status})")
        values = np.asarray(h.getSolution().col_value)
        bound = float(hinfo.mip_dual_bound)
        info = {
            "solver": "highs",
            "status": status,
            "mip_gap": float(hinfo.mip_gap) if math.isfinite(hinfo.mip_gap) else None,
            "objective": float(hinfo.objective_function_value),
            "dual_bound": round(bound, 6) if math.isfinite(bound) else None,
            "solve_s": round(solve_s, 4),
        }
        log.info("optimal: %s, objective %.6f, gap %s, %.2f s", status, info["objective"],
                 info["mip_gap"], solve_s)
        return values, info


def _stop_at(h, deadline: float) -> None:  # noqa: ANN001 - a HiGHS instance
    """Interrupt ``h`` past ``deadline`` (perf_counter seconds), also inside an LP solve or
    presolve, which HiGHS's own time limit checks only now and then."""
    from highspy import cb

    def interrupt(kind: int, message: str, out, data_in, user) -> None:  # noqa: ANN001
        if time.perf_counter() > deadline:
            data_in.user_interrupt = True

    h.setCallback(interrupt, None)
    for kind in (cb.HighsCallbackType.kCallbackSimplexInterrupt,
                 cb.HighsCallbackType.kCallbackIpmInterrupt,
                 cb.HighsCallbackType.kCallbackMipInterrupt):
        h.startCallback(kind)


def _summary(info: dict) -> dict:
    """The facts of one solve worth keeping in the plan's info."""
    return {k: info[k] for k in ("status", "objective", "dual_bound", "solve_s",
                                 "slice_instances")}


def share_step(cost: CostModel) -> float:
    """The largest step every share of the cost model's grid is a whole multiple of (so is
    every plan's total share), or 0 when there is none worth using."""
    shares = np.asarray(cost.shares, dtype=float)
    for step in (0.1, 0.05, 0.01, 0.005, 0.001):
        if np.allclose(shares / step, np.round(shares / step), rtol=0, atol=1e-6):
            return step
    return 0.0


def commodities_of(flows: list[Flow]) -> list[Commodity]:
    """Flows grouped by (model, partition, budget), in a stable order."""
    by_key: dict[tuple[str, int, float], Commodity] = {}
    for f in flows:
        key = (f.model, f.partition, f.budget_ms)
        if key not in by_key:
            by_key[key] = Commodity(f.model, f.partition, f.budget_ms)
        by_key[key].flows.append(f)
    return [by_key[k] for k in sorted(by_key)]


def candidate_segments(commodities: list[Commodity], cost: CostModel, all_blocks: bool = False
                       ) -> tuple[list[SegmentChoices], dict[str, _Reach]]:
    """Every segment between cut points that some commodity can use, with its kept options,
    and each model's fastest-chain table."""
    out: list[SegmentChoices] = []
    reach: dict[str, _Reach] = {}
    by_model: dict[str, list[Commodity]] = defaultdict(list)
    for c in commodities:
        by_model[c.model].append(c)
    for model in sorted(by_model):
        coms = by_model[model]
        L = get_model(model).num_blocks
        points = {c.partition for c in coms} | {L}
        if all_blocks:
            points |= set(range(min(points), L))
        cuts = sorted(points)
        reach[model] = _Reach(cost, model, cuts)
        for i, a in enumerate(cuts):
            for b in cuts[i + 1:]:
                seg = _choices(cost, model, a, b, coms, reach[model])
                if seg is not None:
                    out.append(seg)
    return out, reach


class _Reach:
    """Fastest chain times (sum of the stages' least planned times) between the cut points
    of one model."""

    def __init__(self, cost: CostModel, model: str, cuts: list[int]):
        self.cuts = cuts
        self.fast = {(a, b): segment_options(cost, model, a, b).fastest_time_ms
                     for i, a in enumerate(cuts) for b in cuts[i + 1:]}
        self.between: dict[tuple[int, int], float] = {}
        for i, a in enumerate(cuts):
            self.between[(a, a)] = 0.0
            for b in cuts[i + 1:]:
                self.between[(a, b)] = min(self.between[(a, m)] + self.fast[(m, b)]
                                           for m in cuts[i:] if m < b)

    def slack(self, c: Commodity, a: int, b: int) -> float:
        """Most time a stage [a, b) may take on a route of ``c`` (negative: none fits)."""
        L = self.cuts[-1]
        if c.partition > a:
            return -math.inf
        return c.budget_ms * (1 + EPS) - self.between[(c.partition, a)] - self.between[(b, L)]


def _choices(cost: CostModel, model: str, a: int, b: int, coms: list[Commodity],
             reach: _Reach) -> SegmentChoices | None:
    """The options of [a, b) that some plan may need, or None when no commodity can use it."""
    slack = np.array([reach.slack(c, a, b) for c in coms])
    rates = np.array([c.rate for c in coms])
    if not np.any(slack >= 0):
        return None
    opts = segment_options(cost, model, a, b)  # past-knee points gone, sorted by time
    keep = opts.time_ms <= slack.max()
    e, batch, share = opts.exec_ms[keep], opts.batch[keep], opts.share[keep]
    time, handoff = opts.time_ms[keep], opts.handoff_ms[keep]
    if len(e) == 0:
        return None
    # commodities that can afford each option: a stage of option k carries a subset of them
    affordable = time[:, None] <= slack[None, :]
    useful = np.zeros(len(e), dtype=bool)
    groups: dict[bytes, list[int]] = defaultdict(list)
    for k in range(len(e)):
        groups[affordable[k].tobytes()].append(k)
    for members in groups.values():
        sums = _subset_sums(list(rates[affordable[members[0]]]))
        last = members[-1] + 1  # options sorted by time: compare with every option up to k
        mask = _useful_for_some_rate(e[:last], batch[:last], share[:last], sums)
        useful[members] = mask[members]
    return SegmentChoices(model, a, b, batch[useful], share[useful], e[useful], time[useful],
                          handoff[useful])


def _subset_sums(rates: list[float]) -> np.ndarray:
    sums = np.zeros(1)
    for r in rates:
        sums = np.unique(np.round(np.concatenate([sums, sums + r]), 9))
    return sums[sums > 0]


def _useful_for_some_rate(e: np.ndarray, batch: np.ndarray, share: np.ndarray,
                          rates: np.ndarray, chunk: int = 256) -> np.ndarray:
    """Mask of options (sorted by time) that are strictly cheapest among the options up to
    them at some rate: the others are dominated by a faster-or-equal option at every rate."""
    useful = np.zeros(len(e), dtype=bool)
    per_req = rules.seconds_per_request(batch, e)
    for i in range(0, len(rates), chunk):
        r = rates[i:i + chunk]
        reps = rules.replicas_for(r[None, :], per_req[:, None])
        costs = share[:, None] * reps
        best_before = np.vstack([np.full((1, len(r)), np.inf),
                                 np.minimum.accumulate(costs, axis=0)[:-1]])
        useful |= np.any(costs < best_before * (1 - 1e-12), axis=1)
    return useful


def formulate(commodities: list[Commodity], segments: list[SegmentChoices],
              reach_by_model: dict[str, _Reach]) -> Formulation:
    """The 2e part: ``x``, ``n`` and capacity rows; routes left open (``close_routes``)."""
    form = Formulation()
    users: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)  # (s,k): [(c,col)]
    for ci, c in enumerate(commodities):
        for si, s in enumerate(segments):
            if s.model != c.model:
                continue
            slack = reach_by_model[s.model].slack(c, s.start, s.end)
            for k in np.flatnonzero(s.time_ms <= slack):
                col = form.add_col(0.0, 0.0, 1.0, True)
                form.route_cols[col] = (ci, si, int(k))
                form.add_arc(ci, col, s.start, s.end, [(col, float(s.time_ms[k]))])
                users[(si, int(k))].append((ci, col))
    # n[s, k], capacity and linking rows
    for (si, k), cols in sorted(users.items()):
        s = segments[si]
        cap = float(s.capacity[k]) * (1 + EPS)
        most = sum(commodities[ci].rate for ci, _ in cols)
        n_col = form.add_col(float(s.share[k]), 0.0, float(math.ceil(most / cap)), True)
        form.stage_cols[n_col] = (si, k)
        form.add_row([col for _, col in cols] + [n_col],
                     [commodities[ci].rate for ci, _ in cols] + [-cap], -math.inf, 0.0)
        for ci, col in cols:  # a commodity on the stage needs its own replicas' worth
            alone = replicas_needed(commodities[ci].rate, int(s.batch[k]), float(s.exec_ms[k]))
            form.add_row([col, n_col], [float(alone), -1.0], -math.inf, 0.0)
    return form


def close_routes(form: Formulation, commodities: list[Commodity]) -> None:
    """Flow conservation (a path from the partition point to L) and the latency row of each
    commodity, over every arc added to the formulation."""
    for ci, c in enumerate(commodities):
        L = get_model(c.model).num_blocks
        node_out: dict[int, list[int]] = defaultdict(list)
        node_in: dict[int, list[int]] = defaultdict(list)
        for col, start, end in form.arcs.get(ci, []):
            node_out[start].append(col)
            node_in[end].append(col)
        if not node_out.get(c.partition):
            raise AssertionError(f"commodity {c.model}@{c.partition} has no stage to start")
        for node in sorted(set(node_out) | set(node_in)):
            if node == L:
                continue
            out, inn = node_out.get(node, []), node_in.get(node, [])
            rhs = 1.0 if node == c.partition else 0.0
            form.add_row(out + inn, [1.0] * len(out) + [-1.0] * len(inn), rhs, rhs)
        terms = form.latency[ci]
        form.add_row([col for col, _ in terms], [v for _, v in terms], -math.inf,
                     c.budget_ms * (1 + EPS))


def _to_lp(form: Formulation, highspy):  # noqa: ANN001 - the module, imported lazily
    lp = highspy.HighsLp()
    lp.num_col_ = len(form.cost)
    lp.num_row_ = len(form.rows)
    inf = highspy.kHighsInf
    lp.col_cost_ = np.asarray(form.cost)
    lp.col_lower_ = np.asarray(form.lower)
    lp.col_upper_ = np.asarray(form.upper)
    lp.row_lower_ = np.asarray([max(lo, -inf) for _, _, lo, _ in form.rows])
    lp.row_upper_ = np.asarray([min(hi, inf) for _, _, _, hi in form.rows])
    lp.integrality_ = [highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                       for i in form.integer]
    starts = np.cumsum([0] + [len(idx) for idx, _, _, _ in form.rows])
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.num_col_ = lp.num_col_
    lp.a_matrix_.num_row_ = lp.num_row_
    lp.a_matrix_.start_ = starts.astype(np.int32)
    lp.a_matrix_.index_ = np.asarray([i for idx, _, _, _ in form.rows for i in idx],
                                     dtype=np.int32)
    lp.a_matrix_.value_ = np.asarray([v for _, val, _, _ in form.rows for v in val])
    return lp



def routes_by_commodity(plan: Plan, commodities: list[Commodity]
                        ) -> dict[int, tuple[str, ...]] | None:
    """Each commodity's route in ``plan`` (stage ids), or None when a commodity is split over
    routes or not served."""
    of_flow = {f.id: ci for ci, c in enumerate(commodities) for f in c.flows}
    route_of: dict[int, tuple[str, ...]] = {}
    for r in plan.routes:
        ci = of_flow.get(r.flow)
        if ci is None or route_of.setdefault(ci, r.stages) != r.stages:
            return None
    return route_of if len(route_of) == len(commodities) else None


def start_from(plan: Plan, cost: CostModel, form: Formulation, commodities: list[Commodity],
               segments: list[SegmentChoices], slices: SliceCols | None = None
               ) -> np.ndarray | None:
    """A feasible MILP point at most as costly as ``plan`` (HiGHS's first incumbent), or
    None where that plan is outside the formulation.

    Each 2e stage maps to the kept option of its segment that is at least as fast and costs
    the least at the stage's rate (the pruning guarantees one costs no more than the stage);
    each time-shared slice to a slice instance (``optimal_slices.slice_start``).
    """
    route_of = routes_by_commodity(plan, commodities)
    if route_of is None:
        return None
    seg_of = {(s.model, s.start, s.end): si for si, s in enumerate(segments)}
    x = np.zeros(len(form.cost))
    if any(st.slice is not None for st in plan.stages):
        planned = planned_slices(plan, route_of, seg_of)
        if slices is None or planned is None or not slice_start(slices, planned, x):
            return None
    col_of = {v: col for col, v in form.route_cols.items()}
    n_col_of = {v: col for col, v in form.stage_cols.items()}
    users: dict[tuple[int, int], list[int]] = defaultdict(list)
    stages = plan.stage_by_id()
    for sid in {sid for r in route_of.values() for sid in r}:
        st = stages[sid]
        if st.slice is not None:
            continue
        si = seg_of.get((st.model, st.start, st.end))
        if si is None or st.duty_cycle_ms is not None:
            return None
        seg = segments[si]
        members = [ci for ci, r in route_of.items() if sid in r]
        rate = sum(commodities[ci].rate for ci in members)
        planned_ms = rules.stage_time_ms(st.exec_ms) + float(
            rules.planned_handoff_ms(cost, st.model, st.end, st.batch))
        fast = np.flatnonzero(seg.time_ms <= planned_ms * (1 + 1e-9))
        if len(fast) == 0:
            return None
        costs = [float(seg.share[k]) * replicas_needed(rate, int(seg.batch[k]),
                                                       float(seg.exec_ms[k])) for k in fast]
        users[(si, int(fast[int(np.argmin(costs))]))].extend(members)
    for (si, k), members in users.items():
        seg = segments[si]
        for ci in members:
            col = col_of.get((ci, si, k))
            if col is None:
                return None
            x[col] = 1.0
        rate = sum(commodities[ci].rate for ci in members)
        x[n_col_of[(si, k)]] = replicas_needed(rate, int(seg.batch[k]), float(seg.exec_ms[k]))
    return x


def drafts_from(values: np.ndarray, form: Formulation, commodities: list[Commodity],
                segments: list[SegmentChoices]) -> list[StageDraft]:
    """One draft per used 2e stage, with the flows the solution routes through it."""
    users: dict[tuple[int, int], list[int]] = defaultdict(list)
    for col, (ci, si, k) in form.route_cols.items():
        if values[col] > 0.5:
            users[(si, k)].append(ci)
    drafts = []
    for (si, k), members in sorted(users.items()):
        s = segments[si]
        b, e = int(s.batch[k]), float(s.exec_ms[k])
        fl = [f for ci in sorted(members) for f in commodities[ci].flows]
        config = StageConfig(batch=b, share=float(s.share[k]),
                             replicas=replicas_needed(sum(f.rate for f in fl), b, e),
                             exec_ms=e, handoff_ms=float(s.handoff_ms[k]))
        drafts.append(StageDraft(s.model, s.start, s.end, config, fl))
    return drafts


def with_room(drafts: list[StageDraft], commodities: list[Commodity]) -> list[StageDraft]:
    """``drafts`` with each stage's ``cap_ms`` raised by an equal part of the spare budget of
    every route through it, so that a post-pass (``timeshare.share_slices``) keeps every
    route within its budget."""
    route: dict[str, list[StageDraft]] = defaultdict(list)
    for d in drafts:
        for f in d.flows:
            route[f.id].append(d)
    budget = {f.id: f.budget_ms for c in commodities for f in c.flows}
    spare = {fid: max(0.0, budget[fid] - sum(d.time_ms for d in ds)) / len(ds)
             for fid, ds in route.items()}
    return [replace(d, cap_ms=d.time_ms + min(spare[f.id] for f in d.flows)) for d in drafts]


# --- the gap suite ------------------------------------------------------------------------

GAP_MODELS = ("resnet50", "mobilenet_v2", "vgg16", "vit_b_16", "inception_v3")
#: budget shapes: a flow's budget is what its fragment needs times U(lo, hi)
GAP_BUDGETS = {"tight": (1.1, 1.6), "mixed": (1.1, 8.0), "loose": (2.5, 10.0)}
#: rate shapes: log-uniform in [lo, hi] req/s
GAP_RATES = {"low": (1.0, 20.0), "mixed": (1.0, 300.0), "high": (40.0, 300.0)}


def gap_workloads(cost: CostModel, count: int = 30, seed: int = 0
                  ) -> list[tuple[str, Workload]]:
    """``count`` seeded random single-model workloads small enough for ``optimal``, named.

    Workload k: model ``GAP_MODELS[k % 5]``; 3 to 12 flows over 1 to 6 partition points
    (every point used); budgets ``needed_budget_ms(p) * U(lo, hi)`` of a budget shape
    (tight, mixed, loose: cycling every 5 workloads), so every flow is servable; rates
    log-uniform within a rate shape (low, mixed, high: cycling with k).
    """
    out = []
    budget_names, rate_names = list(GAP_BUDGETS), list(GAP_RATES)
    for k in range(count):
        rng = random.Random(seed * 1_000_003 + k)
        model = GAP_MODELS[k % len(GAP_MODELS)]
        L = get_model(model).num_blocks
        n = rng.randint(3, 12)
        points = sorted(rng.sample(range(L - 1), rng.randint(1, min(6, n))))
        b_name = budget_names[(k // len(GAP_MODELS)) % len(budget_names)]
        r_name = rate_names[(k + k // 15) % len(rate_names)]
        (b_lo, b_hi), (r_lo, r_hi) = GAP_BUDGETS[b_name], GAP_RATES[r_name]
        flows = []
        for i in range(n):
            p = points[i] if i < len(points) else rng.choice(points)
            rate = math.exp(rng.uniform(math.log(r_lo), math.log(r_hi)))
            budget = rules.needed_budget_ms(cost, model, p) * rng.uniform(b_lo, b_hi)
            flows.append(Flow(f"f{i}", model, p, round(rate, 2), round(budget, 3)))
        name = f"{k:02d} {model} {n}f {len(points)}p {b_name}/{r_name}"
        out.append((name, Workload(tuple(flows))))
    return out
