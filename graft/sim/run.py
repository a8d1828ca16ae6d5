"""Run a scenario for several planners on the same client requests: ``run_scenario``.

The clients' requests are generated once (``generate_requests`` with the run's seed; a
client of a group with ``start_s`` keeps only the requests it sends from then on), and every
planner serves exactly those requests. For each planner the run is a sequence of plan
**epochs** (see ``graft.serving.replan`` for when a plan switches):

- epoch 0 is planned at t = 0 from the requests of ``[0, window_s)``: an oracle warm-up
  (the first plan has seen the first window before it serves it);
- at every decision time ``t = k * period_s < duration_s`` the candidate is planned from
  ``[t - window_s, t)``; a switched plan serves the requests that arrive from
  ``t + startup_s`` on, and requests arriving in ``[t, t + startup_s)`` still take the old
  plan;
- each epoch's requests are routed onto its plan (``route_requests``: a request whose
  (model, partition) the plan does not route is REJECTED) and simulated with
  ``simulate_requests`` on that plan alone. Simplification: plans do not share executors, so
  epochs are independent; the old plan's stages drain their own queues, and a new plan
  starts with empty queues.

Share accounting. A plan holds its GPUs from its decision time ``t`` (its stages start
loading) until the later of its last request's completion and the time the next plan takes
over (``t' + startup_s``); epoch 0 holds from 0, and the last plan at least until
``duration_s``. ``share_timeline`` is the step function of the summed ``total_share`` and
``gpus`` of the plans holding GPUs; ``share_seconds`` is its integral over time and
``mean_gpus`` the integral of ``gpus`` divided by ``duration_s``.

Latency. The end-to-end latency of a completed request is
``completion - send + download + rtt / 2``: send -> head -> upload -> rtt/2 to the server
(= server arrival), server time, then the result's download and rtt/2 back. A request is on
time when that is at most its SLO, which is exactly the server meeting its deadline
(arrival + budget). ``slo_attainment`` is on-time requests over all requests, rejected,
dropped and never-viable ones included.
"""

from __future__ import annotations

import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from graft.client.partition import result_bytes, transfer_ms
from graft.client.traffic import ClientRequest, generate_requests
from graft.cost.base import CostModel
from graft.cost.registry import make_cost_model
from graft.models.catalog import get_model
from graft.planner.base import Planner
from graft.planner.registry import make_planner
from graft.serving.metrics import Outcomes, concat, tally
from graft.serving.observe import attainment_ceiling, below_fastest
from graft.serving.replan import (
    FORCED,
    Candidate,
    Window,
    make_candidate,
    observe,
    switch_reason,
    window_floor,
)
from graft.serving.routing import route_columns
from graft.sim.scenario import Scenario, check_size, scenario_clients
from graft.sim.server import simulate_requests
from graft.wording import device_word, plural

log = logging.getLogger(__name__)

#: ``progress(planner, done_epochs, total_epochs)``.
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class PlannerRun:
    """One planner's run of a scenario (latencies end to end, ms; times s)."""

    planner: str
    requests: int
    completed: int
    rejected: int
    dropped: int
    on_time: int
    slo_attainment: float
    #: Percentiles of ``latencies_ms`` (NaN when nothing completed).
    p50_ms: float
    p99_ms: float
    share_seconds: float
    mean_gpus: float
    #: Step function: from ``t_s`` on, the plans holding GPUs sum to (total_share, gpus).
    share_timeline: list[tuple[float, float, int]]
    latencies_ms: list[float] = field(repr=False)
    attainment_by_model: dict[str, float]
    #: Plan switches after the initial plan.
    plans: int
    sim_requests_per_s: float
    #: Switches forced by unrouted fragments or overloaded stages (counted in ``plans``).
    forced_switches: int = 0
    #: (decision time s, reason) of the initial plan and of every switch.
    switches: list[tuple[float, str]] = field(default_factory=list)
    #: Wall time of planning + serving (``sim_requests_per_s`` is ``requests / wall_s``); what
    #: every planner shares (requests, observed windows) is made once, outside it.
    wall_s: float = 0.0
    #: The part of ``wall_s`` spent planning and deciding switches (all but serving).
    plan_s: float = 0.0
    #: The part of ``wall_s`` spent serving: routing, simulating and tallying the epochs.
    serve_s: float = 0.0
    #: The least share-seconds any spatial planner could hold on this scenario under its
    #: controller (``share_seconds_floor``); the same for every planner of a scenario.
    share_seconds_floor: float = 0.0
    #: The share of the scenario's requests that any server could have had on time (their
    #: budget at least their fragment's fastest time): no planner's attainment exceeds it.
    attainment_ceiling: float = 1.0
    #: The most GPUs (and total share) held at once, old and new plans overlapping included:
    #: what the run needed provisioned.
    peak_gpus: int = 0
    peak_share: float = 0.0
    #: Why requests missed, counts per ``graft.serving.metrics.MISS_REASONS``.
    misses: dict[str, int] = field(default_factory=dict)
    #: Per client group (``g<index>``): ``label`` (model, device, SLO, count), ``requests``,
    #: ``on_time``, ``slo_attainment`` and the ``misses`` counts.
    per_group: dict[str, dict] = field(default_factory=dict)
    #: What a share is a fraction of: "GPU", or "device" under a CPU profile.
    device_word: str = "GPU"


@dataclass
class _Epoch:
    """A plan serving the requests that arrive in ``[start_ms, end_ms)``."""

    cand: Candidate
    decided_ms: float
    start_ms: float
    reason: str
    end_ms: float = math.inf
    hold_end_ms: float = 0.0


@dataclass
class _Outcome:
    """What the epochs' simulations gave, accumulated over a planner's run: per epoch, its
    requests' outcome columns, end-to-end latencies and indices into the scenario's
    requests."""

    parts: list[Outcomes] = field(default_factory=list)
    latencies: list[np.ndarray] = field(default_factory=list)
    index: list[np.ndarray] = field(default_factory=list)
    #: Wall seconds spent in ``_serve``.
    serve_s: float = 0.0

    def add(self, o: Outcomes, latency_ms: np.ndarray, at: np.ndarray) -> None:
        self.parts.append(o)
        self.latencies.append(latency_ms)
        self.index.append(at)

    def summary(self, cols: _Columns) -> dict:
        """``graft.serving.metrics.tally`` over every epoch's requests, with the miss
        reasons per client group (``latencies_ms`` added: the completed requests'
        end-to-end latencies, in epoch order)."""
        o = concat(self.parts)
        lat = np.concatenate(self.latencies) if self.latencies else np.zeros(0)
        at = np.concatenate(self.index) if self.index else np.zeros(0, np.intp)
        out = tally(o, lat, np.asarray(cols.models, dtype=str)[cols.model[at]],
                    client_budget=cols.client_budget[at],
                    groups=np.asarray(cols.groups, dtype=str)[cols.group[at]])
        out["latencies_ms"] = lat[o.completed].tolist()
        return out


@dataclass(frozen=True)
class _Columns:
    """The scenario's requests as arrays, in request order."""

    arrival_ms: np.ndarray
    send_ms: np.ndarray
    #: download + rtt / 2 of each request's client (ms).
    return_ms: np.ndarray
    #: index into ``models``
    model: np.ndarray
    models: list[str]
    #: index into ``groups``, the client groups (``g<index>``) by their index
    group: np.ndarray
    groups: list[str]
    #: budget below the fastest the request's fragment can run (``below_fastest``)
    client_budget: np.ndarray


@dataclass(frozen=True)
class _Context:
    """What every planner's run of a scenario shares: its requests, and them as columns."""

    scenario: Scenario
    cost: CostModel
    requests: list[ClientRequest]
    seed: int
    columns: _Columns
    #: (decision ms, the window observed for it) of the initial plan and every decision.
    windows: tuple[tuple[float, Window], ...]
    attainment_ceiling: float = 1.0
    share_seconds_floor: float = 0.0


def client_group(client: str) -> str:
    """The group of a scenario client, ``g<index>``, from its id ``g<index>-<k>``
    (``scenario_clients`` names them so)."""
    return client.rsplit("-", 1)[0]


def group_labels(sc: Scenario) -> dict[str, str]:
    """``g<index>`` -> what the group is: count, model, device, SLO, trace."""
    return {f"g{i}": f"{plural(g.count, 'client')}, {g.model} on {g.device}, SLO "
                     f"{g.slo_ms:g} ms, {g.trace}" + (f", from {g.start_s:g} s"
                                                      if g.start_s else "")
            for i, g in enumerate(sc.clients)}


def _columns(reqs: Sequence[ClientRequest], return_ms: dict[str, float],
             client_budget: np.ndarray, groups: Sequence[str]) -> _Columns:
    """``reqs`` as arrays; ``return_ms``: client id -> download + rtt / 2 (ms);
    ``client_budget`` per request (``below_fastest``); ``groups``: the scenario's groups."""
    models = sorted({r.model for r in reqs})
    code = {m: k for k, m in enumerate(models)}
    gcode = {g: k for k, g in enumerate(groups)}
    return _Columns(
        arrival_ms=np.array([r.arrival_ms for r in reqs], dtype=float),
        send_ms=np.array([r.send_ms for r in reqs], dtype=float),
        return_ms=np.array([return_ms[r.client] for r in reqs], dtype=float),
        model=np.array([code[r.model] for r in reqs], dtype=np.intp), models=models,
        group=np.array([gcode[client_group(r.client)] for r in reqs], dtype=np.intp),
        groups=list(groups), client_budget=np.asarray(client_budget, bool))


def _serve(ctx: _Context, ep: _Epoch, index: int, out: _Outcome) -> None:
    """Simulate the epoch's requests on its plan; set when it stops holding GPUs."""
    cols = ctx.columns
    at = np.flatnonzero((cols.arrival_ms >= ep.start_ms) & (cols.arrival_ms < ep.end_ms))
    last_done = 0.0
    if ep.cand.plan is None:
        none = np.zeros(len(at), bool)
        out.add(Outcomes(none, none, ~none, none, np.full(len(at), np.nan)),
                np.full(len(at), np.nan), at)
    elif len(at):
        reqs = [ctx.requests[i] for i in at.tolist()]
        arrivals = route_columns(reqs, ep.cand.plan, ep.cand.workload, ctx.cost)
        res = simulate_requests(ep.cand.plan, arrivals, ctx.cost, seed=ctx.seed + index,
                                jitter=ctx.scenario.jitter)
        o = res.outcomes
        done = o.completion_ms[o.completed]
        if done.size:
            last_done = max(last_done, float(done.max()))
        # end to end: from the client's send to the result back at the client
        out.add(o, o.completion_ms - cols.send_ms[at] + cols.return_ms[at], at)
    end = ep.end_ms if math.isfinite(ep.end_ms) else ctx.scenario.duration_s * 1000.0
    ep.hold_end_ms = max(end, last_done)


def decision_windows(sc: Scenario) -> list[tuple[float, float, float]]:
    """``(decision ms, window start ms, window end ms)`` of the initial plan (decided at 0 from
    ``[0, window_s)``) and of every later decision ``t = k * period_s < duration_s`` (from
    ``[t - window_s, t)``)."""
    period, window = sc.replan.period_s * 1000.0, sc.replan.window_s * 1000.0
    duration = sc.duration_s * 1000.0
    later = [k * period for k in range(1, math.ceil(duration / period)) if k * period < duration]
    return [(0.0, 0.0, min(window, duration))] + [(t, max(0.0, t - window), t) for t in later]


def _windows(sc: Scenario, cost: CostModel, requests: Sequence[ClientRequest],
             cols: _Columns) -> tuple[tuple[float, Window], ...]:
    """Every decision's observation window, observed once for all planners."""
    out = []
    for t, lo, hi in decision_windows(sc):
        seen = [requests[i] for i in np.flatnonzero((cols.arrival_ms >= lo)
                                                    & (cols.arrival_ms < hi))]
        out.append((t, observe(seen, cost, window_ms=(lo, hi))))
    return tuple(out)


def share_seconds_floor(sc: Scenario, cost: CostModel,
                        windows: Sequence[tuple[float, Window]]) -> float:
    """The least share-seconds any spatial planner can hold over ``[0, duration_s)`` under the
    scenario's controller: at every instant the plan serving was decided at or before it,
    from a window whose ``window_floor`` its total share is at least."""
    floors = [window_floor(w, cost, max_utilization=sc.max_utilization) for _, w in windows]
    ends = [t for t, _ in windows[1:]] + [sc.duration_s * 1000.0]
    return sum((end - t) / 1000.0 * min(floors[: k + 1])
               for k, ((t, _), end) in enumerate(zip(windows, ends)))


def _timeline(epochs: Sequence[_Epoch]) -> list[tuple[float, float, int]]:
    deltas: dict[float, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for ep in epochs:
        if ep.cand.plan is None:
            continue
        share, gpus = ep.cand.plan.total_share, ep.cand.plan.gpus
        for t, sign in ((ep.decided_ms, 1.0), (ep.hold_end_ms, -1.0)):
            deltas[t][0] += sign * share
            deltas[t][1] += sign * gpus
    steps: list[tuple[float, float, int]] = []
    share = gpus = 0.0
    for t in sorted(deltas):
        share += deltas[t][0]
        gpus += deltas[t][1]
        steps.append((t / 1000.0, round(max(share, 0.0), 9), round(gpus)))
    return steps


def _integral(steps: Sequence[tuple[float, float, int]], column: int) -> float:
    return sum(a[column] * (b[0] - a[0]) for a, b in zip(steps, steps[1:]))


def run_planner(name: str, ctx: _Context, progress: Progress | None = None) -> PlannerRun:
    """One planner over the scenario's requests, re-planning as ``graft.serving.replan`` says."""
    sc = ctx.scenario
    planner: Planner = make_planner(name)
    wall = time.perf_counter()
    (_, first), *decisions = ctx.windows
    total = 1 + len(decisions)

    def candidate(window: Window) -> Candidate:
        return make_candidate(planner, window, ctx.cost, max_utilization=sc.max_utilization)

    out = _Outcome()

    def serve(ep: _Epoch) -> None:
        t0 = time.perf_counter()
        _serve(ctx, ep, len(epochs) - 1, out)
        out.serve_s += time.perf_counter() - t0

    epochs = [_Epoch(candidate(first), 0.0, 0.0, "initial")]
    if progress:
        progress(name, 1, total)
    for done, (t, window) in enumerate(decisions, start=2):
        cand = candidate(window)
        reason = switch_reason(epochs[-1].cand, cand, hysteresis=sc.replan.hysteresis,
                               max_utilization=sc.max_utilization, cost=ctx.cost)
        if reason is not None:
            switch_ms = t + sc.replan.startup_s * 1000.0
            epochs[-1].end_ms = switch_ms
            serve(epochs[-1])
            epochs.append(_Epoch(cand, t, switch_ms, reason))
            log.info("%s: t=%.0f s switch (%s): share %.3f", name, t / 1000.0, reason,
                     cand.plan.total_share if cand.plan else 0.0)
        if progress:
            progress(name, done, total)
    serve(epochs[-1])
    wall = time.perf_counter() - wall

    steps = _timeline(epochs)
    n = len(ctx.requests)
    s = out.summary(ctx.columns)
    labels = group_labels(sc)
    switches = [(ep.decided_ms / 1000.0, ep.reason) for ep in epochs]
    return PlannerRun(
        planner=name, requests=n,
        completed=s["completed"],
        rejected=s["rejected"],
        dropped=s["dropped"],
        on_time=s["on_time"],
        slo_attainment=s["slo_attainment"],
        p50_ms=math.nan if s["p50_ms"] is None else s["p50_ms"],
        p99_ms=math.nan if s["p99_ms"] is None else s["p99_ms"],
        share_seconds=_integral(steps, 1),
        mean_gpus=_integral(steps, 2) / sc.duration_s,
        share_timeline=steps,
        latencies_ms=s["latencies_ms"],
        attainment_by_model={m: v["slo_attainment"] for m, v in s["per_model"].items()},
        plans=len(epochs) - 1,
        sim_requests_per_s=n / wall if wall > 0 else math.inf,
        forced_switches=sum(ep.reason in FORCED for ep in epochs[1:]),
        switches=switches,
        wall_s=wall,
        plan_s=wall - out.serve_s,
        serve_s=out.serve_s,
        attainment_ceiling=ctx.attainment_ceiling,
        share_seconds_floor=ctx.share_seconds_floor,
        peak_gpus=max((g for _, _, g in steps), default=0),
        peak_share=max((x for _, x, _ in steps), default=0.0),
        misses=s["misses"],
        per_group={g: {"label": labels[g], **v} for g, v in s["per_group"].items()},
        device_word=device_word(ctx.cost),
    )


def scenario_requests(sc: Scenario, cost: CostModel, seed: int
                      ) -> tuple[list[ClientRequest], dict[str, float]]:
    """The scenario's client requests (server-arrival order) and each client's return time
    (download + rtt / 2, ms)."""
    clients = scenario_clients(sc, seed=seed)
    start = {c.spec.id: c.start_ms for c in clients}
    reqs = generate_requests([c.spec for c in clients], cost, duration_s=sc.duration_s,
                             seed=seed)
    reqs = [r for r in reqs if r.send_ms >= start[r.client]]
    back = {c.spec.id: transfer_ms(result_bytes(get_model(c.spec.model)),
                                   c.spec.downlink_mbps) + c.spec.rtt_ms / 2.0
            for c in clients}
    return reqs, back


def run_scenario(scenario: Scenario, planners: Sequence[str], *, seed: int | None = None,
                 progress: Progress | None = None) -> dict[str, PlannerRun]:
    """Every planner on the same requests (generated once from ``seed``, default the
    scenario's); deterministic for a seed."""
    for name in planners:
        make_planner(name)  # unknown names fail before any work
    check_size(scenario)  # a Scenario built in code is bounded like one read from a file
    seed = scenario.seed if seed is None else seed
    cost = make_cost_model(scenario.cost_model)
    reqs, back = scenario_requests(scenario, cost, seed)
    log.info("scenario %s: %d requests from %d clients over %g s", scenario.name, len(reqs),
             scenario.num_clients, scenario.duration_s)
    client_budget = below_fastest(reqs, cost)
    cols = _columns(reqs, back, client_budget, list(group_labels(scenario)))
    windows = _windows(scenario, cost, reqs, cols)
    ctx = _Context(scenario, cost, reqs, seed, cols, windows,
                   attainment_ceiling(reqs, cost, client_budget),
                   share_seconds_floor(scenario, cost, windows))
    return {name: run_planner(name, ctx, progress) for name in planners}
