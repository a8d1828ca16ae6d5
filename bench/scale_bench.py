"""Scale-out by simulation: 100,000 clients over the five models on a described cluster of
100 nodes with 8 GPUs each, and a node failure (``make bench-scale``).

Every client is one flow (a phone at 1-10 requests/s, its own partition point and budget:
``synthetic_workload`` with the heterogeneous shape). The workload is planned by ``graft``
(stages at most 60% busy, for Poisson bursts) on the cluster
(``graft.planner.nodes.plan_on_cluster``) and simulated for ``--duration`` seconds of
Poisson arrivals (``graft.sim.server.simulate_plan``). Then the node holding the
most GPUs of the plan fails: the requests of every flow whose route has a stage on it fail
until a new plan, made on the remaining nodes, is in force (the window is the re-planning
time measured here); the new plan is simulated the same way.

Attainment before, during and after: on-time answers over requests, in the simulator;
"during" counts the failed flows' requests as misses and the others as the old plan serves
them. The local multi-node measurements (the same load served on 1, 2 and 3 Ray nodes) are
``bench/ray_nodes_bench.py``'s section of the same file, kept when this one rewrites it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graft.cost.registry import make_cost_model  # noqa: E402
from graft.plan.cluster import Cluster, Node  # noqa: E402
from graft.plan.plan import Plan  # noqa: E402
from graft.plan.verify import verify  # noqa: E402
from graft.planner.graft_planner import GraftPlanner  # noqa: E402
from graft.planner.headroom import plan_with_headroom  # noqa: E402
from graft.planner.nodes import plan_on_cluster  # noqa: E402
from graft.sim.server import simulate_plan  # noqa: E402
from graft.workload.flows import Workload  # noqa: E402
from graft.workload.synthetic import HETEROGENEOUS, synthetic_workload  # noqa: E402

#: The section ``bench/ray_nodes_bench.py`` writes (kept here).
LOCAL_SECTION = "## Local nodes on Ray"
CLIENTS = 100_000
NODES, GPUS_PER_NODE = 100, 8
#: A phone sends a few frames a second.
CLIENT_RATE = (1.0, 10.0)
#: Stages planned to run at most this part of their capacity (``--max-utilization``).
MAX_UTILIZATION = 0.6


def cluster(nodes: int = NODES) -> Cluster:
    return Cluster(tuple(Node(f"node{i:03d}", GPUS_PER_NODE) for i in range(nodes)))


def simulate(plan: Plan, workload: Workload, cost, duration_s: float) -> tuple[list, list]:
    """The simulated requests of ``plan`` and whether each was on time."""
    res = simulate_plan(plan, workload, cost, duration_s=duration_s, seed=1)
    return res.requests, list(res.outcomes.on_time)


def attainment(requests: list, on_time: list, failed: set[str] = frozenset()) -> float:
    """On-time share of ``requests``; those of ``failed`` flows count as misses."""
    ok = sum(1 for r, t in zip(requests, on_time) if t and r.flow not in failed)
    return ok / max(1, len(requests))


def flows_on(plan: Plan, node: str) -> set[str]:
    """Flows whose route has a stage with a replica on ``node``."""
    gpus = {g for g, n in enumerate(plan.gpu_nodes) if n == node}
    stages = {s.id for s in plan.stages if gpus & set(s.gpus)}
    return {r.flow for r in plan.routes if stages & set(r.stages)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=CLIENTS)
    ap.add_argument("--nodes", type=int, default=NODES)
    ap.add_argument("--duration", type=float, default=0.5,
                    help="simulated seconds of arrivals per plan (default 0.5)")
    ap.add_argument("--output", default="out/bench/scale.md")
    args = ap.parse_args()
    cost = make_cost_model("analytic:v100")
    shape = replace(HETEROGENEOUS, rate=CLIENT_RATE)
    workload = synthetic_workload(cost, args.clients, shape, seed=11)
    rate = sum(f.rate for f in workload.flows)
    where = cluster(args.nodes)

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    say(f"planning {args.clients:,} clients ({rate:,.0f} req/s) on {args.nodes} nodes...")
    t0 = time.perf_counter()
    def make(c):
        return plan_with_headroom(GraftPlanner(), workload, c, max_utilization=MAX_UTILIZATION)

    plan = plan_on_cluster(make, workload, cost, where)
    plan_s = time.perf_counter() - t0
    errors = verify(workload, plan, cost)
    crossing = plan.info.get("routes_crossing_nodes", 0)
    used = sorted(set(plan.gpu_nodes))
    say(f"planned in {plan_s:.1f} s: share {plan.total_share:.1f} on {plan.gpus} GPUs, "
        f"{len(used)} nodes; simulating...")
    requests, on_time = simulate(plan, workload, cost, args.duration)
    before, n_before = attainment(requests, on_time), len(requests)

    lost = max(used, key=lambda n: (plan.gpu_nodes.count(n), n))
    failed = flows_on(plan, lost)
    during = attainment(requests, on_time, failed)
    say(f"node {lost} fails ({len(failed):,} flows on it); re-planning...")
    t0 = time.perf_counter()
    after_plan = plan_on_cluster(make, workload, cost, where.without(lost))
    replan_s = time.perf_counter() - t0
    after_errors = verify(workload, after_plan, cost)
    requests, on_time = simulate(after_plan, workload, cost, args.duration)
    after, n_after = attainment(requests, on_time), len(requests)

    lines = [
        "# Scale-out benchmark",
        "",
        f"Command: `python bench/scale_bench.py --clients {args.clients} --nodes {args.nodes} "
        f"--duration {args.duration:g}` (`make bench-scale`). Machine: {os.cpu_count()} cores, "
        "CPU only; planning on one core, `analytic:v100`.",
        "",
        "## Internet scale, by simulation",
        "",
        f"{args.clients:,} clients, one flow each, over the five models (the heterogeneous "
        f"shape: 8 partition points per model, budgets 1.3-6x what each fragment needs; "
        f"{CLIENT_RATE[0]:g}-{CLIENT_RATE[1]:g} requests/s per client, {rate:,.0f} req/s in "
        f"all), on a described cluster of {args.nodes} nodes with {GPUS_PER_NODE} V100s each "
        f"and {where.network_gbps:g} Gb/s between nodes, planned by graft with "
        f"`--max-utilization {MAX_UTILIZATION:g}`. Attainment: on-time requests in "
        f"{args.duration:g} s of simulated Poisson arrivals per plan.",
        "",
        "| | value |",
        "|---|---:|",
        f"| planning time (s) | {plan_s:.1f} |",
        f"| total share | {plan.total_share:.1f} |",
        f"| GPUs / nodes used | {plan.gpus} / {len(used)} |",
        f"| routes crossing nodes | {crossing:,} of {len(plan.routes):,} "
        f"({crossing / max(1, len(plan.routes)):.1%}) |",
        f"| planned again with network-priced hand-offs | "
        f"{'yes' if plan.info.get('network_priced') else 'no'} |",
        f"| verifier | {'passes' if not errors else f'{len(errors)} violations'} |",
        f"| attainment before the failure | {before:.4f} ({n_before:,} requests) |",
        f"| node lost | {lost}: {plan.gpu_nodes.count(lost)} GPUs, {len(failed):,} flows "
        f"({len(failed) / len(workload.flows):.1%}) |",
        f"| attainment while re-planning ({replan_s:.1f} s) | {during:.4f} |",
        f"| attainment after, on {args.nodes - 1} nodes | {after:.4f} ({n_after:,} requests) |",
        f"| new plan: share, GPUs / nodes | {after_plan.total_share:.1f}, {after_plan.gpus} / "
        f"{len(set(after_plan.gpu_nodes))} |",
        f"| new plan verifier | {'passes' if not after_errors else 'violations'} |",
        "",
    ]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    kept = out.read_text().split(LOCAL_SECTION, 1) if out.exists() else []
    local = (LOCAL_SECTION + kept[1] if len(kept) == 2 else
             f"{LOCAL_SECTION}\n\nNot measured: run `python bench/ray_nodes_bench.py "
             f"--output {out}` (needs Ray).\n")
    out.write_text("\n".join(lines) + "\n" + local)
    say(f"wrote {out}")


if __name__ == "__main__":
    main()
