"""The ``optimal`` planner: graft's problem as a mixed-integer program, solved by HiGHS.

For small workloads only: it measures how far the heuristics are from the optimum.

**Problem.** Flows of one (model, partition, budget) are one *commodity* (rates add; every
other planner keeps such flows on one route too). Cut points are the workload's partition
points of a model and L (optionally every block). A *stage* is a segment [a, b) between cut
points with one (batch B, share g) point of the cost model's grid, execution time e and
per-replica capacity ``cap = B * 1000 / e``. Variables:

- ``x[c, s, k]`` binary: commodity c passes stage (segment s, option k);
- ``n[s, k]`` integer: replicas of stage (s, k).

Each commodity's ``x`` form a path from its partition point to L (flow conservation);
capacity ``sum_c rate_c x[c,s,k] <= cap_k n[s,k]``; latency ``sum 2 e_k x[c,s,k] <=
budget_c``; and ``r_ck x[c,s,k] <= n[s,k]`` with ``r_ck`` the replicas commodity c needs
alone (implied, but it tightens the relaxation). Minimise ``sum g_k n[s,k]``. A segment may
hold several stages with different options (graft's budget classes do that), never two with
the same option (merging them never costs more).

HiGHS starts from the better of gslice's and graft's (without time-shared slices) plans,
mapped onto the formulation, so even a run stopped by the time limit costs no more than
either. The MILP knows only the 2e rule: graft's time-shared slices (a duty cycle inside a
slice) are outside it, so graft may beat it; ``time_share=True`` runs the same post-pass on
the optimal stages.

**Exact pruning.** ``x[c, s, k]`` exists only when the fastest possible chain from the
commodity's point to a, plus ``2 e_k``, plus the fastest chain from b to L fits its budget.
An option k of segment s is dropped when, for every rate R a stage of option k can carry (a
sum of a subset of the rates of the commodities whose budgets admit k), an option j kept
before it in e order is at least as fast and costs no more at R (``g ceil(R / cap)``): any
plan using k becomes one using j at no more cost. Past-knee shares (more share, no faster)
go first.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from graft.cost.base import CostModel
from graft.errors import GraftInputError
from graft.models.catalog import get_model
from graft.plan import rules
from graft.plan.plan import Plan
from graft.plan.rules import EPS, replicas_needed
from graft.planner.assemble import StageDraft, assemble_plan
from graft.planner.base import Planner
from graft.planner.configs import StageConfig, segment_options
from graft.planner.graft_planner import GraftPlanner
from graft.planner.gslice import GslicePlanner
from graft.planner.servable import split_servable
from graft.planner.timeshare import share_slices
from graft.workload.flows import Flow, Workload

try:  # the plain binding: highspy.Highs prints a banner to stdout when it is created
    from highspy._core import _Highs as _HighsSolver
except ImportError:  # pragma: no cover - other highspy layouts
    from highspy import Highs as _HighsSolver

log = logging.getLogger(__name__)

DEFAULT_MAX_FRAGMENTS = 12
DEFAULT_MAX_VARIABLES = 200_000


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
    """The MILP in HiGHS's row-wise form, and what each column means."""

    cost: list[float] = field(default_factory=list)
    lower: list[float] = field(default_factory=list)
    upper: list[float] = field(default_factory=list)
    integer: list[bool] = field(default_factory=list)
    rows: list[tuple[list[int], list[float], float, float]] = field(default_factory=list)
    #: column of n[s, k] -> (segment index, option index)
    stage_cols: dict[int, tuple[int, int]] = field(default_factory=dict)
    #: column of x[c, s, k] -> (commodity index, segment index, option index)
    route_cols: dict[int, tuple[int, int, int]] = field(default_factory=dict)

    def add_col(self, cost: float, lower: float, upper: float, integer: bool) -> int:
        self.cost.append(cost)
        self.lower.append(lower)
        self.upper.append(upper)
        self.integer.append(integer)
        return len(self.cost) - 1

    def add_row(self, idx: list[int], val: list[float], lo: float, hi: float) -> None:
        self.rows.append((idx, val, lo, hi))


@dataclass(frozen=True)
class OptimalPlanner:
    name: str = "optimal"
    time_limit_s: float = 60.0
    mip_rel_gap: float = 1e-4
    max_fragments: int = DEFAULT_MAX_FRAGMENTS
    max_variables: int = DEFAULT_MAX_VARIABLES
    #: also cut at blocks that are no flow's partition point (a larger space than graft's)
    cut_at_all_blocks: bool = False
    #: after solving, let low-rate stages take turns on shared slices (graft's post-pass,
    #: ``graft.planner.timeshare``); the MILP itself knows only the 2e rule
    time_share: bool = False

    def plan(self, workload: Workload, cost: CostModel, *, allow_partial: bool = False) -> Plan:
        t0 = time.perf_counter()
        served, unserved = split_servable(workload, cost, allow_partial=allow_partial)
        commodities = commodities_of(served)
        if len(commodities) > self.max_fragments:
            raise GraftInputError(
                f"optimal solves at most {self.max_fragments} fragments (distinct model, "
                f"partition and budget); this workload has {len(commodities)}")
        segments, reach = candidate_segments(commodities, cost, self.cut_at_all_blocks)
        form = formulate(commodities, segments, reach)
        n_cols = len(form.cost)
        if n_cols > self.max_variables:
            raise GraftInputError(
                f"optimal solves at most {self.max_variables} variables; this workload "
                f"needs {n_cols}")
        starts = [start_from(make(), workload, cost, form, commodities, segments)
                  for make in (GslicePlanner, lambda: GraftPlanner(time_share=False))]
        start = min((x for x in starts if x is not None), default=None,
                    key=lambda x: float(np.dot(form.cost, x)))
        build_s = time.perf_counter() - t0
        values, info = self._solve(form, start)
        drafts = drafts_from(values, form, commodities, segments)
        if self.time_share:
            drafts = share_slices(drafts, cost)
        plan = assemble_plan(self.name, cost, drafts, served, unserved)
        info.update(
            variables=n_cols,
            binaries=len(form.route_cols),
            constraints=len(form.rows),
            fragments=len(commodities),
            options=int(sum(len(s.exec_ms) for s in segments)),
            build_s=round(build_s, 4),
            start_objective=(None if start is None
                             else round(float(np.dot(form.cost, start)), 6)),
        )
        if not self.time_share and plan.total_share > info["objective"] * (1 + 1e-6) + 1e-9:
            log.warning("optimal: plan total %.6f exceeds the MILP objective %.6f",
                        plan.total_share, info["objective"])
        return plan.with_info(**info)

    def _solve(self, form: Formulation, start: np.ndarray | None) -> tuple[np.ndarray, dict]:
        import highspy

        h = _HighsSolver()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("time_limit", float(self.time_limit_s))
        h.setOptionValue("mip_rel_gap", float(self.mip_rel_gap))
        h.passModel(_to_lp(form, highspy))
        if start is not None:
            sol = highspy.HighsSolution()
            sol.col_value = start
            sol.value_valid = True
            h.setSolution(sol)
        t = time.perf_counter()
        h.run()
        solve_s = time.perf_counter() - t
        status = h.modelStatusToString(h.getModelStatus())
        hinfo = h.getInfo()
        if hinfo.primal_solution_status != 2:  # kSolutionStatusFeasible
            raise GraftInputError(
                f"optimal found no solution within its {self.time_limit_s:g} s limit "
                f"(HiGHS status: {status})")
        values = np.asarray(h.getSolution().col_value)
        info = {
            "solver": "highs",
            "status": status,
            "mip_gap": float(hinfo.mip_gap) if math.isfinite(hinfo.mip_gap) else None,
            "objective": float(hinfo.objective_function_value),
            "solve_s": round(solve_s, 4),
        }
        log.info("optimal: %s, objective %.6f, gap %.2e, %.2f s", status, info["objective"],
                 info["mip_gap"], solve_s)
        return values, info


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
    per_req = e / (1000.0 * batch)
    for i in range(0, len(rates), chunk):
        r = rates[i:i + chunk]
        reps = np.maximum(1.0, np.ceil(np.outer(per_req, r) * (1 - EPS)))
        costs = share[:, None] * reps
        best_before = np.vstack([np.full((1, len(r)), np.inf),
                                 np.minimum.accumulate(costs, axis=0)[:-1]])
        useful |= np.any(costs < best_before * (1 - 1e-12), axis=1)
    return useful


def formulate(commodities: list[Commodity], segments: list[SegmentChoices],
              reach_by_model: dict[str, _Reach]) -> Formulation:
    form = Formulation()
    # x[c, s, k]: per commodity, the stages it may pass
    x_cols: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)  # (c,s): [(k,col)]
    users: dict[tuple[int, int], list[tuple[int, int]]] = defaultdict(list)  # (s,k): [(c,col)]
    for ci, c in enumerate(commodities):
        for si, s in enumerate(segments):
            if s.model != c.model:
                continue
            slack = reach_by_model[s.model].slack(c, s.start, s.end)
            for k in np.flatnonzero(s.time_ms <= slack):
                col = form.add_col(0.0, 0.0, 1.0, True)
                form.route_cols[col] = (ci, si, int(k))
                x_cols[(ci, si)].append((int(k), col))
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
    # flow conservation and latency per commodity
    for ci, c in enumerate(commodities):
        L = get_model(c.model).num_blocks
        node_out: dict[int, list[int]] = defaultdict(list)
        node_in: dict[int, list[int]] = defaultdict(list)
        lat_idx: list[int] = []
        lat_val: list[float] = []
        for si, s in enumerate(segments):
            for k, col in x_cols.get((ci, si), []):
                node_out[s.start].append(col)
                node_in[s.end].append(col)
                lat_idx.append(col)
                lat_val.append(float(s.time_ms[k]))
        for node in sorted(set(node_out) | set(node_in)):
            if node == L:
                continue
            out, inn = node_out.get(node, []), node_in.get(node, [])
            rhs = 1.0 if node == c.partition else 0.0
            form.add_row(out + inn, [1.0] * len(out) + [-1.0] * len(inn), rhs, rhs)
        if not node_out.get(c.partition):
            raise AssertionError(f"commodity {c.model}@{c.partition} has no stage to start")
        form.add_row(lat_idx, lat_val, -math.inf, c.budget_ms * (1 + EPS))
    return form


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


def start_from(planner: Planner, workload: Workload, cost: CostModel, form: Formulation,
               commodities: list[Commodity], segments: list[SegmentChoices]
               ) -> np.ndarray | None:
    """A feasible MILP point at most as costly as ``planner``'s plan (HiGHS's first
    incumbent), or None where that plan is outside the formulation.

    Each stage maps to the kept option of its segment that is at least as fast and costs the
    least at the stage's rate; the pruning guarantees one costs no more than the stage.
    """
    try:
        plan = planner.plan(workload, cost, allow_partial=True)
    except (GraftInputError, ValueError) as e:
        log.debug("optimal: no start from %s: %s", planner.name, e)
        return None
    of_flow = {f.id: ci for ci, c in enumerate(commodities) for f in c.flows}
    route_of: dict[int, tuple[str, ...]] = {}
    for r in plan.routes:
        ci = of_flow.get(r.flow)
        if ci is None or route_of.setdefault(ci, r.stages) != r.stages:
            return None  # a flow the MILP does not serve, or a commodity split over routes
    if len(route_of) != len(commodities):
        return None
    seg_of = {(s.model, s.start, s.end): si for si, s in enumerate(segments)}
    col_of = {v: col for col, v in form.route_cols.items()}
    n_col_of = {v: col for col, v in form.stage_cols.items()}
    users: dict[tuple[int, int], list[int]] = defaultdict(list)
    stages = plan.stage_by_id()
    for sid in {sid for r in route_of.values() for sid in r}:
        st = stages[sid]
        si = seg_of.get((st.model, st.start, st.end))
        if si is None or st.duty_cycle_ms is not None:
            return None
        seg = segments[si]
        members = [ci for ci, r in route_of.items() if sid in r]
        rate = sum(commodities[ci].rate for ci in members)
        planned = rules.stage_time_ms(st.exec_ms) + float(
            rules.planned_handoff_ms(cost, st.model, st.end, st.batch))
        fast = np.flatnonzero(seg.time_ms <= planned * (1 + 1e-9))
        if len(fast) == 0:
            return None
        costs = [float(seg.share[k]) * replicas_needed(rate, int(seg.batch[k]),
                                                       float(seg.exec_ms[k])) for k in fast]
        users[(si, int(fast[int(np.argmin(costs))]))].extend(members)
    x = np.zeros(len(form.cost))
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
    """One draft per used stage, with the flows the solution routes through it.

    Each draft's ``cap_ms`` gives it an equal part of the spare budget of every route
    through it, so a post-pass (time-shared slices) keeps every route within budget.
    """
    users: dict[tuple[int, int], list[int]] = defaultdict(list)
    route: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for col, (ci, si, k) in form.route_cols.items():
        if values[col] > 0.5:
            users[(si, k)].append(ci)
            route[ci].append((si, k))
    spare = {}
    for ci, stages in route.items():
        used = sum(float(segments[si].time_ms[k]) for si, k in stages)
        spare[ci] = max(0.0, commodities[ci].budget_ms - used) / len(stages)
    drafts = []
    for (si, k), members in sorted(users.items()):
        s = segments[si]
        b, e = int(s.batch[k]), float(s.exec_ms[k])
        fl = [f for ci in sorted(members) for f in commodities[ci].flows]
        config = StageConfig(batch=b, share=float(s.share[k]),
                             replicas=replicas_needed(sum(f.rate for f in fl), b, e),
                             exec_ms=e, handoff_ms=float(s.handoff_ms[k]))
        drafts.append(StageDraft(s.model, s.start, s.end, config, fl,
                                 cap_ms=config.time_ms + min(spare[ci] for ci in members)))
    return drafts
