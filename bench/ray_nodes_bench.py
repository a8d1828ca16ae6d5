"""The same load served on 1, 2 and 3 local Ray nodes (``make bench-scale``; needs
``pip install -e .[ray]``).

The plan is the cluster tests' three-stage plan of ``tiny`` (blocks 0-2, 2-4 and 4-6, one
stage per GPU; ``tests/clusterplans.py``), so that on more than one node routes cross nodes.
For each cluster shape (one node of 3 GPUs; nodes of 2 and 1; three of 1, declared to Ray on
this CPU machine), ``graft serve --ray``'s controller places the plan and starts an agent per
node; the load generator sends Poisson arrivals of the three flows to one node's frontend
(the node of the first stage), which runs what it holds and forwards the rest. Goodput:
answers within the budget per second. All nodes share this machine's cores, so more nodes
add no compute here: the rows measure what crossing nodes costs, not scale-out.

Writes the "Local nodes on Ray" section of ``--output`` (the rest of the file is
``bench/scale_bench.py``'s).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from graft.client.loadgen import poisson_schedule, run_open_loop  # noqa: E402
from graft.cost.registry import make_cost_model  # noqa: E402
from graft.planner.registry import make_planner  # noqa: E402
from graft.workload.flows import Workload  # noqa: E402

from clusterplans import COST_MODEL, WORKLOAD, crossing_plan  # noqa: E402

SECTION = "## Local nodes on Ray"
#: GPUs of each node, per cluster shape
SHAPES = ((3,), (2, 1), (1, 1, 1))


def run_shape(gpus: tuple[int, ...], workload: Workload, duration_s: float) -> dict:
    import ray
    from ray.cluster_utils import Cluster as RayCluster

    from graft.runtime.ray_cluster import RayController

    cluster = RayCluster(initialize_head=True,
                         head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        for g in gpus:
            cluster.add_node(num_cpus=1, num_gpus=g)
        cluster.wait_for_nodes()
        cost = make_cost_model(COST_MODEL)
        planner = make_planner("graft")
        ctl = RayController(cluster.address, workload, cost,
                            lambda c: planner.plan(workload, c, allow_partial=True),
                            plan=crossing_plan(), port=0, grpc_port=None)
        ctl.start()
        try:
            status = ctl.status()
            entry = next(n for n in status["nodes"] if "s0" in n["stages"])
            crossing = ctl.plan.info.get("routes_crossing_nodes", 0)
            schedule = poisson_schedule(workload.flows, duration_s, seed=5)
            report = asyncio.run(run_open_loop(entry["http"], schedule))
            total = report.rows()[-1]
            return {"nodes": len(gpus), "gpus": "+".join(map(str, gpus)),
                    "crossing": crossing, "routes": len(ctl.plan.routes), **total}
        finally:
            ctl.stop()
    finally:
        if ray.is_initialized():
            ray.shutdown()
        cluster.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=float, default=20.0, help="requests/s per flow (3 flows)")
    ap.add_argument("--budget-ms", type=float, default=100.0)
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of load per shape")
    ap.add_argument("--output", default="out/bench/scale.md")
    args = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    workload = Workload(tuple(replace(f, rate=args.rate, budget_ms=args.budget_ms)
                              for f in WORKLOAD.flows))
    rows = []
    for gpus in SHAPES:
        print(f"serving on {len(gpus)} local node(s) ({'+'.join(map(str, gpus))} GPUs)...",
              file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        rows.append(run_shape(gpus, workload, args.duration))
        print(f"  done in {time.perf_counter() - t0:.0f} s: goodput "
              f"{rows[-1]['goodput_rps']:.1f}/s", file=sys.stderr, flush=True)

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    lines = [
        SECTION, "",
        f"Command: `python bench/ray_nodes_bench.py --rate {args.rate:g} --budget-ms "
        f"{args.budget_ms:g} --duration {args.duration:g}` (`make bench-scale`; needs "
        f"`pip install -e .[ray]`). Machine: {os.cpu_count()} cores, CPU only: every node is "
        "a Ray node on this machine (`ray.cluster_utils.Cluster`, GPUs declared, CPU "
        "workers), so the nodes share its cores and more nodes add no compute; the rows "
        "measure what crossing nodes costs.", "",
        f"The plan: `tiny` in three stages (blocks 0-2, 2-4, 4-6), one per GPU "
        f"(`tests/clusterplans.py`), placed by the controller on each cluster shape; flows "
        f"entering at blocks 0, 2 and 4, {args.rate:g} req/s each, Poisson, {args.budget_ms:g} "
        f"ms budgets, {args.duration:g} s, all sent to the frontend of the node holding the "
        "first stage (it forwards what it does not hold).", "",
        "| nodes | GPUs per node | routes crossing nodes | sent | answered | rejected | "
        "failed | goodput (on time/s) | attainment | p50 ms | p99 ms |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['nodes']} | {r['gpus']} | {r['crossing']} of {r['routes']} | "
                     f"{r['sent']} | {r['answered']} | {r['rejected']} | {r['failed']} | "
                     f"{r['goodput_rps']:.1f} | {r['slo_attainment']:.3f} | "
                     f"{ms(r['p50_ms'])} | {ms(r['p99_ms'])} |")
    lines.append("")
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = out.read_text() if out.exists() else "# Scale-out benchmark\n\n"
    head = text.split(SECTION, 1)[0].rstrip("\n")
    out.write_text(head + "\n\n" + "\n".join(lines))
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
