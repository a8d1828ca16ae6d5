"""Efficiency on real execution: graft's and gslice's plans of one workload, each served on
this machine's cores, at rising load; and (when Ray is installed) the same workload on Ray
Serve. Part of ``bench/runtime_bench.py`` (``make bench-runtime``).

The workload: ``mobilenet_v2`` split at six partition points, every flow at the same rate
and a budget of ``SLACK`` times what its fragment needs on the profile. The planners plan
on the CPU profile scaled by the batch latency the fidelity section measured against it on
these cores (``profile:<path>,scale=<x>``: the workers share the cores with the frontend
and the load generator). At each load level (a multiple of the base rates) each planner
plans the workload anew, the
plan is served (``Engine`` + HTTP frontend) and driven by the load generator with Poisson
arrivals. A planner *sustains* a level when its attainment is at least 99% of the level's
ceiling (the share of requests whose budget covers their fragment's fastest time: 1.0 here,
since every budget is several times that). Its goodput is the on-time answers per second at
the highest level it sustains.

Goodput per core is reported three ways: per core the plan holds (its share: what an
operator reserves, an MPS percentage on a GPU), per core its workers used (their CPU time
over the measured window, from ``/proc``), and per machine core. On CPU nothing enforces a
plan's share, so a plan holding more cores than the machine has still runs, on borrowed
time; the CPU time its workers used is what it really took.
"""

from __future__ import annotations

import asyncio
import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

from graft.client import loadgen
from graft.cost.base import CostModel
from graft.plan.rules import needed_budget_ms
from graft.planner.registry import make_planner
from graft.runtime.engine import Engine
from graft.runtime.server import BackgroundServer
from graft.wording import plural
from graft.workload.flows import Flow, Workload

MODEL = "mobilenet_v2"
#: (partition, base rate req/s) of each flow
POINTS = ((0, 4.0), (2, 4.0), (4, 4.0), (7, 4.0), (11, 4.0), (14, 4.0))
SLACK = 6.0
LOADS = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0)
PLANNERS = ("graft", "gslice")
#: A level is sustained when attainment >= SUSTAIN * the ceiling.
SUSTAIN = 0.99


@dataclass
class Level:
    load: float
    offered_rps: float
    share: float
    processes: int
    goodput_rps: float
    attainment: float
    p99_ms: float | None
    failed: int
    #: cores the plan's workers used over the measured window (CPU seconds per second)
    used_cores: float

    @property
    def sustained(self) -> bool:
        return self.attainment >= SUSTAIN


def flows_at(cost: CostModel, load: float) -> tuple[Flow, ...]:
    return tuple(Flow(f"p{p}", MODEL, p, rate * load,
                      round(needed_budget_ms(cost, MODEL, p) * SLACK, 1)) for p, rate in POINTS)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time of the processes ``pids`` so far (Linux ``/proc``)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / tick


def serve_level(planner: str, cost: CostModel, load: float, duration_s: float) -> Level:
    flows = flows_at(cost, load)
    workload = Workload(flows)
    plan = make_planner(planner).plan(workload, cost)
    schedule = loadgen.poisson_schedule(flows, duration_s, seed=7)
    engine = Engine(plan, workload, cost)
    with BackgroundServer(engine) as srv:
        warm = loadgen.poisson_schedule(flows, 1.0, seed=8)
        asyncio.run(loadgen.run_open_loop(srv.url, warm))
        pids = [p.pid for p in engine.pool.procs]
        cpu0, t0 = cpu_seconds(pids), time.monotonic()
        row = asyncio.run(loadgen.run_open_loop(srv.url, schedule)).rows()[-1]
        used = (cpu_seconds(pids) - cpu0) / (time.monotonic() - t0)
    processes = len(plan.processes())
    return Level(load, len(schedule) / duration_s, plan.total_share, processes,
                 row["goodput_rps"], row["slo_attainment"], row["p99_ms"],
                 row["rejected"] + row["failed"], used)


def ladder(planner: str, cost: CostModel, duration_s: float) -> list[Level]:
    """Levels in ``LOADS`` order until two in a row are not sustained."""
    out: list[Level] = []
    misses = 0
    for load in LOADS:
        print(f"efficiency: {planner} at {load:g}x the base rates...", file=sys.stderr,
              flush=True)
        lv = serve_level(planner, cost, load, duration_s)
        out.append(lv)
        misses = 0 if lv.sustained else misses + 1
        if misses == 2:
            break
    return out


def best(levels: list[Level]) -> Level | None:
    ok = [lv for lv in levels if lv.sustained]
    return max(ok, key=lambda lv: lv.goodput_rps) if ok else None


def ray_levels(cost: CostModel, duration_s: float) -> list[dict[str, Any]] | str:
    """The same loads on Ray Serve (``bench/ray_bench.py``), or why not."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return "Ray is not installed (`pip install -e .[ray]`)"
    from ray_bench import ray_serve_goodput

    flows = list(flows_at(cost, 1.0))
    return ray_serve_goodput(flows, LOADS, duration_s)


def section(cost: CostModel, duration_s: float) -> list[str]:
    cores = os.cpu_count() or 1
    runs = {p: ladder(p, cost, duration_s) for p in PLANNERS}
    base = flows_at(cost, 1.0)
    lines = [
        "## Efficiency: graft and gslice plans served on the same cores",
        "",
        f"{MODEL} split at blocks {', '.join(str(p) for p, _ in POINTS)}, budgets "
        f"{', '.join(f'{f.budget_ms:g}' for f in base)} ms ({SLACK:g}x what each fragment "
        f"needs on the profile), {sum(f.rate for f in base):g} req/s in all at 1x. At each "
        f"load each planner plans anew on the CPU profile scaled by {cost.scale:g} (the "
        "fidelity run's measured / predicted batch latency); the plan is served on this "
        f"machine's {cores} cores for {duration_s:g} s of Poisson arrivals (after 1 s of "
        f"warm-up), the load generator on the same cores. A level is sustained when "
        f"attainment is at least {SUSTAIN:.0%} (the ceiling is 1.0: every budget covers its "
        "fragment). Share: the part of the machine the plan holds (1 = all "
        f"{cores} cores; a CPU share is a number of intra-op threads); processes: its workers "
        "(a time-shared slice is one); used: the cores its workers used (their CPU time over "
        "the window).",
        "",
        "| planner | load | offered req/s | share | processes | used (cores) | "
        "goodput req/s | attainment | p99 ms | refused or failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for p, levels in runs.items():
        for lv in levels:
            p99 = "-" if lv.p99_ms is None else f"{lv.p99_ms:.0f}"
            lines.append(f"| {p} | {lv.load:g}x | {lv.offered_rps:.0f} | {lv.share:g} | "
                         f"{lv.processes} | {lv.used_cores:.2f} | {lv.goodput_rps:.1f} | "
                         f"{lv.attainment:.3f} | {p99} | {lv.failed} |")
    top = {p: best(levels) for p, levels in runs.items()}
    lines.append("")
    for p, lv in top.items():
        if lv is None:
            lines.append(f"- {p}: sustains no level.")
        else:
            lines.append(f"- {p}: sustains {lv.load:g}x: goodput {lv.goodput_rps:.1f} req/s, "
                         f"{lv.goodput_rps / (lv.share * cores):.1f} per core its plan holds "
                         f"({_cores(lv.share * cores)} held on {cores}), "
                         f"{lv.goodput_rps / lv.used_cores:.1f} per core its workers used "
                         f"({lv.used_cores:.2f}), {lv.goodput_rps / cores:.1f} per machine "
                         "core.")
    lines += same_load(runs)
    g, s = top.get("graft"), top.get("gslice")
    if g and s:
        held = (g.goodput_rps / g.share) / (s.goodput_rps / s.share)
        used = (g.goodput_rps / g.used_cores) / (s.goodput_rps / s.used_cores)
        machine = g.goodput_rps / s.goodput_rps
        lines.append(f"- graft / gslice goodput per core held, at the highest level each "
                     f"sustains: {held:.2f}x (target 1.3x: "
                     f"**{'met' if held >= 1.3 else 'not met'}**). Per core its workers used: "
                     f"{used:.2f}x; on the same {cores} cores, whatever each holds: "
                     f"{machine:.2f}x. A plan's share is what it reserves (on a GPU, MPS "
                     "percentages no other process may use); on CPU nothing enforces it, so a "
                     "plan holding more cores than the machine has runs on borrowed time.")
    lines += ["", *ray_section(cost, duration_s, g), ""]
    return lines


def _cores(n: float) -> str:
    """``"1 core"``, ``"6 cores"``, ``"1.5 cores"``."""
    return plural(int(n), "core") if float(n).is_integer() else f"{n:g} cores"


def same_load(runs: dict[str, list[Level]]) -> list[str]:
    """CPU time per on-time answer at each load both planners sustain."""
    g = {lv.load: lv for lv in runs.get("graft", []) if lv.sustained}
    s = {lv.load: lv for lv in runs.get("gslice", []) if lv.sustained}
    both = sorted(set(g) & set(s))
    if not both:
        return []
    per = ", ".join(f"{load:g}x {1000 * g[load].used_cores / g[load].goodput_rps:.1f} / "
                    f"{1000 * s[load].used_cores / s[load].goodput_rps:.1f}" for load in both)
    return [f"- Worker CPU ms per on-time answer, graft / gslice, at the loads both sustain: "
            f"{per}."]


def ray_section(cost: CostModel, duration_s: float, graft_best: Level | None) -> list[str]:
    lines = ["## What a user would pick instead: Ray Serve", ""]
    got = ray_levels(cost, duration_s)
    if isinstance(got, str):
        return lines + [f"Not measured: {got}."]
    lines += [
        "The same flows on Ray Serve on the same cores: one deployment per fragment "
        "(`@serve.batch`, up to 8), driven by the same load generator through a v2 HTTP "
        "ingress (bench/ray_bench.py). Ray Serve has no deadlines: late answers count as "
        "misses.",
        "",
        "| load | offered req/s | goodput req/s | attainment | p99 ms | mean batch |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for r in got:
        p99 = "-" if r.get("p99_ms") is None else f"{r['p99_ms']:.0f}"
        batch = r.get("mean_batch")
        lines.append(f"| {r['load']:g}x | {r['offered_rps']:.0f} | {r['goodput_rps']:.1f} | "
                     f"{r['slo_attainment']:.3f} | {p99} | "
                     f"{'-' if batch is None or math.isnan(batch) else f'{batch:.2f}'} |")
    ok = [r for r in got if r["slo_attainment"] >= SUSTAIN]
    # where Ray Serve sustains no level, compare with the most it answered in time anywhere
    ray_best = max((r["goodput_rps"] for r in ok or got), default=0.0)
    lines.append("")
    if graft_best is None:
        lines.append("- graft sustains no level: no ratio.")
    elif ray_best == 0.0:
        lines.append("- Ray Serve answered nothing in time: no ratio.")
    else:
        ratio = graft_best.goodput_rps / ray_best
        what = ("at the highest level each sustains" if ok else
                "graft's at the highest level it sustains against Ray Serve's best at any "
                "level (it sustains none)")
        lines.append(f"- graft / Ray Serve goodput, {what}: {graft_best.goodput_rps:.1f} / "
                     f"{ray_best:.1f} = {ratio:.2f}x (target 1.5x: "
                     f"**{'met' if ratio >= 1.5 else 'not met'}**).")
    return lines
