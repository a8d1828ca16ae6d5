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
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graft.workload.flows import Workload

log = logging.getLogger(__name__)

#: The served demo: mobilenet_v2 split at three points, low enough rates for two cores.
SERVE_MODEL = "mobilenet_v2"
SERVE_POINTS = ((0, 3.0), (5, 4.0), (12, 5.0))  # (partition, req/s)
#: Budgets as a multiple of what each fragment needs on the CPU profile.
BUDGET_SLACK = 6.0


#: What the demo suggests next: (command, what it does).
NEXT = (
    ("graft models resnet50", "what each partition point of a model is"),
    ("graft plan w.json -o plan.json", "plan your own flows (graft verify checks it)"),
    ("graft compare w.json", "every planner on your flows, side by side"),
    ("graft simulate paper -o out/", "clients on networks: GPUs needed, why requests miss"),
    ("graft serve --workload w.json", "serve it over Triton's HTTP and gRPC protocols"),
    ("graft loadgen http://127.0.0.1:8000 --workload w.json", "and drive it (another shell)"),
)

#: Width of the demo's paragraphs.
WIDTH = 96


def _say(text: str = "") -> None:
    print(text, flush=True)


def _para(text: str, indent: str = "") -> None:
    """A paragraph, wrapped to ``WIDTH``."""
    _say(textwrap.fill(text, WIDTH, initial_indent=indent, subsequent_indent=indent,
                       break_on_hyphens=False))


def workload_lines(workload: Workload) -> list[str]:
    """Per model of ``workload``: its flows, request rate, partition points and budgets."""
    from graft.models.catalog import get_model
    from graft.wording import plural

    lines = []
    for m in workload.models():
        flows = [f for f in workload.flows if f.model == m]
        points = sorted({f.partition for f in flows})
        lines.append(
            f"  {m:13s} {plural(len(flows), 'flow'):>9s}, {sum(f.rate for f in flows):7,.0f} "
            f"req/s, partition points {', '.join(map(str, points))} of "
            f"{get_model(m).num_blocks}, budgets {min(f.budget_ms for f in flows):.1f}-"
            f"{max(f.budget_ms for f in flows):.1f} ms")
    return lines


def plan_step() -> str:
    from graft.cost.registry import make_cost_model
    from graft.planner.compare import format_table, run_planners
    from graft.planner.registry import planner_names
    from graft.workload.synthetic import demo_workload

    cost = make_cost_model("analytic:v100")
    workload = demo_workload(cost)
    points = {(f.model, f.partition) for f in workload.flows}
    _say("== 1. Planning ==")
    _para(f"The built-in workload: {len(workload.flows)} client flows over "
          f"{len(workload.models())} models, {len(points)} (model, partition point) pairs, on "
          "an analytic V100 (cost model analytic:v100). A flow is a stream of requests from "
          "clients that ran the first p blocks of a model themselves (p is the partition "
          "point; `graft models resnet50` shows what each p of resnet50 is) and uploaded the "
          "activation: the server runs the rest, and each request must finish within the "
          "flow's server budget.")
    for line in workload_lines(workload):
        _say(line)
    _say()
    _para("Every planner below serves all of it, every request within its budget "
          "(checked by the verifier: `valid`). Total share = the GPU fractions of all stage "
          "replicas summed, i.e. GPU-seconds per second of serving: 4.0 means four GPUs' worth "
          "of compute, busy or not; GPUs = whole GPUs after packing the slices. The lower "
          "bound: for every block, its request rate times the least GPU-seconds one request "
          "can cost there at any batch and share, summed (`vs lower bound` is the total share "
          "over it); no plan goes below it, and tight budgets (small batches) keep every real "
          "plan well above it. graft re-aligns "
          "fragments so that they share stages and batch together; gslice gives every "
          "fragment (or budget group) its own slice; nexus time-slices whole GPUs.")
    _say()
    names = [n for n in planner_names() if n != "optimal"]
    outcomes = run_planners(workload, cost, names)
    table = format_table(outcomes)
    _say(table)
    share = {o.planner: o.total_share for o in outcomes if o.total_share}
    if "graft" in share and share.get("gslice"):
        _say()
        _para(f"Here graft holds {share['graft'] / share['gslice']:.2f}x gslice's share for "
              "the same traffic and the same deadlines.")
    return table


def simulate_step(out: Path, seconds: float) -> dict:
    from graft.sim.report import answer, write_report
    from graft.sim.run import run_scenario
    from graft.sim.scenario import load_scenario

    _say("\n== 2. Simulating clients on changing uplinks ==")
    sc = load_scenario("paper")
    sc = dataclasses.replace(sc, duration_s=min(sc.duration_s, seconds))
    models = sorted({g.model for g in sc.clients})
    devices = sorted({g.device for g in sc.clients})
    _para(f"The built-in 'paper' scenario for {sc.duration_s:g} s: {sc.num_clients} clients "
          f"({', '.join(devices)}) running {', '.join(models)} on synthetic Wi-Fi and LTE "
          "uplinks. Before each request a client picks its partition point from its "
          "bandwidth estimate (the least predicted end-to-end latency); what is left of its "
          "SLO after its own compute, upload and download is the server budget. The server "
          f"re-plans every {sc.replan.period_s:g} s from the requests it saw. Share-seconds "
          "= total share integrated over time; the attainment ceiling = the requests whose "
          "budget any server could meet.")
    runs = run_scenario(sc, ["graft", "gslice"], seed=sc.seed)
    write_report(str(out / "sim"), sc.name, runs)
    lines = dict(zip(runs, answer(runs), strict=True))
    for line in lines.values():
        _para(line, indent="  ")
    _para("Requests whose client left too little budget miss whatever the server does; "
          f"{out / 'sim' / 'report.md'} has the numbers per client group, and plots.", "  ")
    return lines


def serve_step(out: Path, duration_s: float) -> str:
    from graft.client import loadgen
    from graft.cost.profiled import ProfileCostModel
    from graft.cost.profiler import profile_model, write_profile
    from graft.plan.rules import needed_budget_ms
    from graft.planner.registry import make_planner
    from graft.progress import Heartbeat
    from graft.runtime.engine import Engine
    from graft.runtime.server import BackgroundServer
    from graft.wording import plural
    from graft.workload.flows import Flow, Workload

    _say("\n== 3. Serving a real model on this CPU ==")
    _say(f"Profiling {SERVE_MODEL} block by block on this machine (about 15 s)...")
    profile_path = out / "profile.json"
    with Heartbeat(f"profiling {SERVE_MODEL}", stream=sys.stdout) as beat:
        profile = profile_model(SERVE_MODEL, device="cpu", batches=(1, 2, 4, 8), warmup=2,
                                repeats=5, progress=beat.update)
    write_profile(profile, str(profile_path))
    cost = ProfileCostModel.from_file(profile_path, name=f"profile:{profile_path}")
    flows = tuple(Flow(f"p{p}", SERVE_MODEL, p, rate,
                       round(needed_budget_ms(cost, SERVE_MODEL, p) * BUDGET_SLACK, 1))
                  for p, rate in SERVE_POINTS)
    workload = Workload(flows)
    plan = make_planner("graft").plan(workload, cost)
    (out / "plan.json").write_text(json.dumps(plan.to_json(), indent=1))
    _para(f"Planned {plural(len(flows), 'flow')} (partition points "
          f"{', '.join(str(f.partition) for f in flows)}; budgets "
          f"{', '.join(f'{f.budget_ms:g}' for f in flows)} ms: {BUDGET_SLACK:g} times what "
          f"each needs on this profile) with graft: {plural(len(plan.stages), 'stage')}, "
          f"total share {plan.total_share:.2f} of the CPU (on a CPU profile a share is a "
          "fraction of the cores).")
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
    _say("\nWhat to run next (`.venv/bin/graft`, or `. .venv/bin/activate` first; README.md "
         "has a three-flow w.json to start from):")
    width = max(len(cmd) for cmd, _ in NEXT)
    for cmd, what in NEXT:
        _say(f"  {cmd:{width}s}  {what}")
    return 0
