"""Re-planning: when a new plan replaces the serving one (see ``docs/simulator.md``).

At each decision time ``t`` the controller observes the requests that reached the server in
``[t - window, t)`` (``observe``: a ``Window`` of them and their flows, from
``observed_workload``), plans them with headroom and partial service
(``plan_with_headroom(..., allow_partial=True)``: flows no plan can serve are left out, and
their requests are rejected), and compares the candidate with the serving plan:

- **forced** switches: the serving plan routes no flow of a (model, partition) that the
  candidate routes (``unrouted``: those requests would be rejected), or the observed rates
  routed onto one of its stages exceed what the stage was provisioned for, its planned rate
  divided by ``max_utilization`` (``overloaded``: its queues would grow without bound). The
  window's requests are routed onto the serving plan exactly as ``route_requests`` routes
  them, so those its admission control rejects count for nothing;
- an optional switch, ``cheaper``: the candidate's total share is below
  ``(1 - hysteresis)`` times the serving plan's.

Otherwise the serving plan stays. With no observed flow there is nothing to plan and the
serving plan stays.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

from graft.cost.base import CostModel
from graft.plan.plan import Plan
from graft.planner.base import Planner
from graft.planner.headroom import plan_with_headroom
from graft.planner.lower_bound import share_floor
from graft.serving.observe import Arriving, observed_workload
from graft.serving.routing import route_columns
from graft.workload.flows import Flow, Workload


@dataclass(frozen=True)
class ReplanConfig:
    """Plan every ``period_s`` from the requests of the last ``window_s``; switch only when
    the new plan saves ``hysteresis`` of the total share (or the old one cannot cope); a new
    plan serves ``startup_s`` after it is decided (in the simulator; the runtime's new plan
    serves once its workers are ready)."""

    period_s: float = 10.0
    window_s: float = 10.0
    hysteresis: float = 0.05
    startup_s: float = 1.0


#: Plans made while serving run every stage at most this fraction of its capacity.
DEFAULT_MAX_UTILIZATION = 0.8


#: Reasons a switch is forced; ``cheaper`` is the optional one.
FORCED = ("initial", "unrouted", "overloaded")
#: Relative slack before a stage's observed rate counts as over its provisioned rate.
OVERLOAD_TOLERANCE = 1e-6


@dataclass(frozen=True)
class Window:
    """One observation window: the requests that reached the server in it, its length, and
    the flows they make (``observed_workload``). It depends on the scenario alone, so every
    planner of a run and the share-seconds floor use the same one."""

    requests: tuple[Arriving, ...]
    seconds: float
    workload: Workload


def observe(requests: Sequence[Arriving], cost: CostModel, *,
            window_ms: tuple[float, float]) -> Window:
    """The requests of ``requests`` reaching the server in ``window_ms``, and their flows."""
    start, end = window_ms
    seen = tuple(r for r in requests if start <= r.arrival_ms < end)
    obs = observed_workload(seen, cost, window_ms=window_ms)
    return Window(seen, (end - start) / 1000.0, obs.workload)


@dataclass(frozen=True)
class Candidate:
    """A plan made from one observation window (``plan`` None: nothing was observed)."""

    plan: Plan | None
    window: Window

    @property
    def workload(self) -> Workload:
        """The flows the plan was made for."""
        return self.window.workload


def make_candidate(planner: Planner, window: Window, cost: CostModel, *,
                   max_utilization: float) -> Candidate:
    """Plan the window's flows (partial: unservable flows are left unserved)."""
    if not window.workload.flows:
        return Candidate(None, window)
    plan = plan_with_headroom(planner, window.workload, cost, max_utilization=max_utilization,
                              allow_partial=True)
    return Candidate(plan, window)


def window_floor(window: Window, cost: CostModel, *, max_utilization: float) -> float:
    """The least total share of any spatial plan ``make_candidate`` can make from the window:
    ``share_floor`` of its flows at the rates a plan with headroom provisions (0.0 when
    nothing was observed; observed flows are all servable, their budgets at least what
    their fragments need)."""
    return share_floor([replace(f, rate=f.rate / max_utilization)
                        for f in window.workload.flows], cost)


def routed_flows(plan: Plan | None, workload: Workload) -> dict[tuple[str, int], list[Flow]]:
    """The routed flows of each (model, partition), tightest budget first."""
    out: dict[tuple[str, int], list[Flow]] = defaultdict(list)
    if plan is None:
        return out
    routed = {r.flow for r in plan.routes}
    for f in workload.flows:
        if f.id in routed:
            out[(f.model, f.partition)].append(f)
    for fl in out.values():
        fl.sort(key=lambda f: (f.budget_ms, f.id))
    return out


def unrouted(current: Candidate, candidate: Candidate) -> bool:
    """Whether the candidate routes a (model, partition) that the serving plan does not."""
    return bool(set(routed_flows(candidate.plan, candidate.workload))
                - set(routed_flows(current.plan, current.workload)))


def overloaded(current: Candidate, candidate: Candidate, max_utilization: float,
               cost: CostModel) -> bool:
    """Whether the candidate's window of requests, routed onto the serving plan as
    ``route_requests`` would route them (admission control included: requests it rejects
    load nothing), puts more load on a stage than its planned rate / ``max_utilization``."""
    window = candidate.window
    if current.plan is None or window.seconds <= 0:
        return False
    routed = route_columns(window.requests, current.plan, current.workload, cost).flow
    routes = {r.flow: r.stages for r in current.plan.routes}
    load: dict[str, float] = defaultdict(float)
    for flow, count in Counter(f for f in routed if f is not None).items():
        for stage in routes[flow]:
            load[stage] += count / window.seconds
    return any(load[s.id] > s.rate / max_utilization * (1 + OVERLOAD_TOLERANCE)
               for s in current.plan.stages if s.id in load)


def switch_reason(current: Candidate, candidate: Candidate, *, hysteresis: float,
                  max_utilization: float, cost: CostModel) -> str | None:
    """Why the candidate should replace the serving plan, or None to keep it."""
    if candidate.plan is None:
        return None
    if current.plan is None or unrouted(current, candidate):
        return "unrouted"
    if overloaded(current, candidate, max_utilization, cost):
        return "overloaded"
    if candidate.plan.total_share < (1.0 - hysteresis) * current.plan.total_share:
        return "cheaper"
    return None
