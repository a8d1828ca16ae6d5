"""``graft demo`` (``make demo``): the whole system in a few minutes, with no input files.

1. **Plan**: the built-in heterogeneous workload (200 flows over five models) with every
   planner, side by side, and what the numbers mean.
2. **Simulate**: the built-in ``paper`` scenario (clients on synthetic LTE uplinks choosing
   their partition points, re-planning as load moves), briefly, for graft and gslice.
3. **Serve**: profile ``mobilenet_v2`` on this machine's CPU, plan a small split-inference
   workload on that profile, serve it with real PyTorch execution behind the Open Inference
   Protocol, and drive it with the load generator for ``duration_s`` with live progress.

Everything it writes goes to one folder (``demo-out/`` by default): the simulator's report
and plots, the profile, the plan, the load generator's results, and ``demo.md``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)

#: The served demo: mobilenet_v2 split at three points, low enough rates for two cores.
SERVE_MODEL = "mobilenet_v2"
SERVE_POINTS = ((0, 3.0), (5, 4.0), (12, 5.0))  # (partition, req/s)
#: Budgets as a multiple of what each fragment needs on the CPU profile.
BUDGET_SLACK = 6.0


def _say(text: str = "") -> None:
    print(text, flush=True)


def plan_step() -> str:
    from graft.cost.registry import make_cost_model
    from graft.planner.compare import format_table, run_planners
    from graft.planner.registry import planner_names
    from graft.workload.synthetic import DEMO_MODELS, demo_workload

    cost = make_cost_model("analytic:v100")
    workload = demo_workload(cost)
    points = {m: sorted({f.partition for f in workload.flows if f.model == m})
              for m in DEMO_MODELS}
    budgets = [f.budget_ms for f in workload.flows]
    _say("== 1. Planning ==")
    _say(f"The built-in workload: {len(workload.flows)} client flows over "
         f"{', '.join(DEMO_MODELS)}. Each flow is a stream of requests that enter the model "
         "at one partition point (the client ran the blocks before it) and must finish on the "
         f"server within its budget. Here the flows use {sum(map(len, points.values()))} "
         f"partition points and budgets of {min(budgets):.1f}-{max(budgets):.1f} ms, on an "
         "analytic V100 (analytic:v100).")
    _say("Total share = GPU fractions summed over stage replicas, i.e. GPU-seconds per second "
         "of serving; the lower bound is the least any plan of this traffic could use. "
         "graft re-aligns fragments into shared stages; gslice gives every fragment (budget "
         "group) its own slice; nexus time-slices whole GPUs.\n")
    names = [n for n in planner_names() if n != "optimal"]
    table = format_table(run_planners(workload, cost, names))
    _say(table)
    return table


def simulate_step(out: Path, seconds: float) -> dict:
    from graft.sim.report import write_report
    from graft.sim.run import run_scenario
    from graft.sim.scenario import load_scenario

    _say("\n== 2. Simulating clients on LTE uplinks ==")
    sc = load_scenario("paper")
    sc = dataclasses.replace(sc, duration_s=min(sc.duration_s, seconds))
    _say(f"The 'paper' scenario for {sc.duration_s:g} s: clients on synthetic LTE uplinks pick "
         "their partition points as bandwidth changes; the server re-plans every "
         f"{sc.replan.period_s:g} s.")
    runs = run_scenario(sc, ["graft", "gslice"], seed=sc.seed)
    write_report(str(out / "sim"), sc.name, runs)
    lines = {}
    for name, r in runs.items():
        lines[name] = (f"{name}: {r.share_seconds:.1f} share-seconds, SLO attainment "
                       f"{r.slo_attainment:.3f} (ceiling {r.attainment_ceiling:.3f}), "
                       f"p99 {r.p99_ms:.0f} ms")
        _say("  " + lines[name])
    _say(f"  report and plots: {out / 'sim'}")
    return lines


def serve_step(out: Path, duration_s: float) -> str:
    from graft.client import loadgen
    from graft.cost.profiled import ProfileCostModel
    from graft.cost.profiler import profile_model, write_profile
    from graft.plan.rules import needed_budget_ms
    from graft.planner.registry import make_planner
    from graft.runtime.engine import Engine
    from graft.runtime.server import BackgroundServer
    from graft.workload.flows import Flow, Workload

    _say("\n== 3. Serving a real model on this CPU ==")
    _say(f"Profiling {SERVE_MODEL} block by block on this machine (about 15 s)...")
    profile_path = out / "profile.json"
    write_profile(profile_model(SERVE_MODEL, device="cpu", batches=(1, 2, 4, 8), warmup=2,
                                repeats=5), str(profile_path))
    cost = ProfileCostModel.from_file(profile_path, name=f"profile:{profile_path}")
    flows = tuple(Flow(f"p{p}", SERVE_MODEL, p, rate,
                       round(needed_budget_ms(cost, SERVE_MODEL, p) * BUDGET_SLACK, 1))
                  for p, rate in SERVE_POINTS)
    workload = Workload(flows)
    plan = make_planner("graft").plan(workload, cost)
    (out / "plan.json").write_text(json.dumps(plan.to_json(), indent=1))
    _say(f"Planned {len(flows)} flows (partition points "
         f"{', '.join(str(f.partition) for f in flows)}; budgets "
         f"{', '.join(f'{f.budget_ms:g}' for f in flows)} ms) with graft: "
         f"{len(plan.stages)} stages, total share {plan.total_share:.2f} of the CPU.")
    _say("Starting one worker process per executor of the plan...")
    with BackgroundServer(Engine(plan, workload, cost)) as srv:
        _say(f"Serving at {srv.url} (Triton's HTTP protocol; models "
             f"{', '.join(f'{m}.p{p}' for m, p in srv.engine.fragments)}). Driving it for "
             f"{duration_s:g} s with open-loop Poisson arrivals at the flows' rates:")
        schedule = loadgen.poisson_schedule(flows, duration_s, seed=0)
        report = asyncio.run(loadgen.run_open_loop(srv.url, schedule, progress=sys.stdout))
    report.write_json(str(out / "loadgen.json"))
    report.write_csv(str(out / "loadgen.csv"))
    table = report.table()
    _say(table)
    return table


def run_demo(out_dir: str = "demo-out", *, duration_s: float = 20.0,
             sim_seconds: float = 30.0) -> int:
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        from graft.errors import GraftInputError
        raise GraftInputError(f"cannot create {out_dir!r}: {e.strerror}") from None
    t0 = time.perf_counter()
    plan_table = plan_step()
    sim_lines = simulate_step(out, sim_seconds)
    serve_table = serve_step(out, duration_s)
    report = "\n".join([
        "# graft demo", "",
        "## 1. Planning the built-in workload (analytic:v100)", "", plan_table, "",
        "## 2. The paper scenario, simulated", "", *[f"- {v}" for v in sim_lines.values()],
        "", "Plots and report: `sim/`.", "",
        f"## 3. {SERVE_MODEL} served on this CPU, {duration_s:g} s of load", "", serve_table,
        "", "Plan: `plan.json`; CPU profile: `profile.json`; raw results: `loadgen.json`, "
        "`loadgen.csv`.", ""])
    (out / "demo.md").write_text(report)
    _say(f"\nDone in {time.perf_counter() - t0:.0f} s; everything is in {out}/ (demo.md first).")
    _say("Next: `graft plan WORKLOAD.json`, `graft simulate paper -o out/`, "
         "`graft serve --workload WORKLOAD.json`, `graft loadgen URL --workload ...` "
         "(README.md).")
    return 0
