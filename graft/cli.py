"""``graft``: one entry point for every command.

Bad input (files, fields, names) exits with code 2 and one line naming what is wrong.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import sys
from collections.abc import Callable
from typing import Any

from graft.errors import GraftInputError

DEFAULT_PLANNER = "graft"
DEFAULT_COST_MODEL = "analytic:v100"
DEFAULT_SIM_PLANNERS = ("graft", "gslice", "nexus")
#: The cost model ``graft serve --workload`` plans with on this machine's CPU.
DEFAULT_SERVE_COST_MODEL = "profile:tiny-cpu"

log = logging.getLogger("graft")


def _write_json(data: Any, path: str | None) -> None:
    text = json.dumps(data, indent=1)
    if path is None or path == "-":
        print(text)
    else:
        try:
            with open(path, "w") as fh:
                fh.write(text + "\n")
        except OSError as e:
            raise GraftInputError(f"cannot write {path!r}: {e.strerror}") from None


# --- commands -------------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    if args.regenerate or args.check:
        from graft.models.measure import regenerate

        diffs = regenerate(check=args.check)
        if args.check:
            for d in diffs:
                print(d)
            print("block table matches the models" if not diffs else
                  f"{len(diffs)} differences from the committed block table")
            return 1 if diffs else 0
        print("block table regenerated")
        return 0
    from graft.models.catalog import all_models

    models = all_models()
    if args.json:
        _write_json({"models": [m.to_json() for m in models]}, None)
        return 0
    for m in models:
        gflop = sum(b.flops for b in m.blocks) / 1e9
        mparams = sum(b.param_bytes for b in m.blocks) / 4e6
        print(f"{m.name:14s} {m.num_blocks:3d} blocks  input {tuple(m.input_shape)}  "
              f"{gflop:8.3f} GFLOP  {mparams:7.2f} M params")
    return 0


def _cost_query(item: Any, i: int) -> tuple[str, int, int, int, float]:
    if not isinstance(item, dict):
        raise GraftInputError(f"query [{i}] must be an object")
    from graft.models.catalog import get_model

    for key in ("model", "start", "end", "batch", "share"):
        if key not in item:
            raise GraftInputError(f"query [{i}] is missing it", field=key)
    model = get_model(str(item["model"]))
    ints = {}
    for key in ("start", "end", "batch"):
        v = item[key]
        if isinstance(v, bool) or not isinstance(v, int):
            raise GraftInputError(f"query [{i}] needs an integer, got {v!r}", field=key)
        ints[key] = v
    if not 0 <= ints["start"] < ints["end"] <= model.num_blocks:
        raise GraftInputError(
            f"query [{i}] blocks [{ints['start']}, {ints['end']}) are not within "
            f"0..{model.num_blocks} of {model.name}", field="end")
    if ints["batch"] < 1:
        raise GraftInputError(f"query [{i}] batch must be >= 1", field="batch")
    share = item["share"]
    if isinstance(share, bool) or not isinstance(share, (int, float)) or not (
            math.isfinite(share) and 0 < share <= 1):
        raise GraftInputError(f"query [{i}] share must be in (0, 1], got {share!r}",
                              field="share")
    return model.name, ints["start"], ints["end"], ints["batch"], float(share)


def cmd_cost(args: argparse.Namespace) -> int:
    from graft.cost.registry import make_cost_model
    from graft.workload.flows import load_json

    cost = make_cost_model(args.cost_model)
    queries = load_json("-", "cost queries")
    if not isinstance(queries, list):
        raise GraftInputError("cost queries must be a JSON list of objects")
    out = [cost.latency_ms(*_cost_query(q, i)) for i, q in enumerate(queries)]
    print(json.dumps(out))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from graft.cost.registry import make_cost_model
    from graft.planner.headroom import plan_with_headroom
    from graft.planner.registry import make_planner
    from graft.workload.flows import load_workload

    planner = make_planner(args.planner)
    cost = make_cost_model(args.cost_model)
    workload = load_workload(args.workload)
    plan = plan_with_headroom(planner, workload, cost, max_utilization=args.max_utilization,
                              allow_partial=args.allow_partial)
    log.info("%s: %d stages, total share %.3f on %d GPUs (lower bound %.3f)%s",
             plan.planner, len(plan.stages), plan.total_share, plan.gpus,
             plan.lower_bound_share,
             f"; {len(plan.unserved)} flows unserved" if plan.unserved else "")
    _write_json(plan.to_json(), args.output)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from graft.cost.registry import make_cost_model
    from graft.plan.plan import Plan
    from graft.plan.verify import verify
    from graft.workload.flows import load_json, load_workload

    workload = load_workload(args.workload)
    plan = Plan.from_json(load_json(args.plan, "plan"))
    cost = make_cost_model(args.cost_model or plan.cost_model)
    errors = verify(workload, plan, cost, allow_partial=args.allow_partial)
    if errors:
        for e in errors:
            print(f"violation: {e}")
        print(f"INVALID: {len(errors)} violations")
        return 1
    print(f"OK: {len(plan.routes)} flows routed over {len(plan.stages)} stages, "
          f"total share {plan.total_share:.3f} on {plan.gpus} GPUs "
          f"({plan.gpu_sharing}, {cost.name})"
          + (f", {len(plan.unserved)} unserved" if plan.unserved else ""))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from graft.cost.registry import make_cost_model
    from graft.planner.compare import format_table, run_planners
    from graft.planner.registry import planner_names
    from graft.workload.flows import load_workload
    from graft.workload.synthetic import demo_workload

    cost = make_cost_model(args.cost_model)
    if args.workload:
        workload = load_workload(args.workload)
        what = args.workload
    else:
        workload = demo_workload(cost, seed=args.seed)
        what = f"built-in demo workload (seed {args.seed})"
    names = args.planner or [n for n in planner_names() if n != "optimal"]
    print(f"{what}: {len(workload.flows)} flows over {len(workload.models())} models, "
          f"cost model {cost.name}\n")
    print(format_table(run_planners(workload, cost, names)))
    return 0


def cmd_profile(args: argparse.Namespace) -> int:
    from graft.cost.profiler import merge_profiles, profile_model, write_profile

    batches = tuple(_int_list(args.batches, "--batches"))
    shares = tuple(_float_list(args.shares, "--shares")) if args.shares else None
    parts = []
    for name in args.models:
        log.info("profiling %s on %s", name, args.device)
        parts.append(profile_model(name, device=args.device, batches=batches, shares=shares,
                                   warmup=args.warmup, repeats=args.repeats,
                                   progress=lambda msg: log.info("  %s", msg)))
    write_profile(merge_profiles(parts), args.output)
    print(f"wrote {args.output}: use it as --cost-model profile:{args.output}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from graft.cost.calibration import report

    print(report(args.data_dir))
    return 0


def _progress_bar(enabled: bool) -> Callable[[str, int, int], None] | None:
    """A one-line text bar on stderr, redrawn per epoch (None when disabled)."""
    if not enabled:
        return None

    def show(planner: str, done: int, total: int) -> None:
        width = 30
        filled = round(width * done / total) if total else width
        sys.stderr.write(f"\r{planner:>10s} [{'#' * filled}{'.' * (width - filled)}] "
                         f"{done}/{total} epochs")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()

    return show


def cmd_simulate(args: argparse.Namespace) -> int:
    import os

    from graft.planner.registry import make_planner
    from graft.sim.report import write_report
    from graft.sim.run import run_scenario
    from graft.sim.scenario import load_scenario

    scenario = load_scenario(args.scenario, trace_dir=args.trace_dir)
    planners = args.planner or list(DEFAULT_SIM_PLANNERS)
    for name in planners:
        make_planner(name)
    progress = _progress_bar(args.verbose or sys.stderr.isatty())
    runs = run_scenario(scenario, planners, seed=args.seed, progress=progress)
    try:
        os.makedirs(args.output, exist_ok=True)
    except OSError as e:
        raise GraftInputError(f"cannot create {args.output!r}: {e.strerror}") from None
    paths = write_report(args.output, scenario.name, runs)
    for name, r in runs.items():
        log.info("%s: attainment %.3f, p99 %.0f ms, %.1f share-seconds, %.2f GPUs, %d switches",
                 name, r.slo_attainment, r.p99_ms, r.share_seconds, r.mean_gpus, r.plans)
    print(f"wrote {len(paths)} files to {args.output}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from graft.cost.registry import make_cost_model
    from graft.plan.plan import Plan
    from graft.plan.verify import verify
    from graft.planner.registry import make_planner
    from graft.runtime.server import serve
    from graft.workload.flows import load_json, load_workload

    if args.plan is None and args.workload is None:
        raise GraftInputError("graft serve needs --plan PLAN.json or --workload WORKLOAD.json")
    if not 0 < args.port < 65536:
        raise GraftInputError(f"--port must be in 1..65535, got {args.port}", field="port")
    workload = load_workload(args.workload) if args.workload else None
    if args.plan is not None:
        plan = Plan.from_json(load_json(args.plan, "plan"))
        cost = make_cost_model(args.cost_model or plan.cost_model)
        if workload is not None:
            errors = verify(workload, plan, cost, allow_partial=True)
            if errors:
                raise GraftInputError(f"the plan fails verification ({len(errors)} "
                                      f"violations), first: {errors[0]}")
    else:
        cost = make_cost_model(args.cost_model or DEFAULT_SERVE_COST_MODEL)
        plan = make_planner(args.planner).plan(workload, cost, allow_partial=True)
        for u in plan.unserved:
            log.warning("flow %s is not served: it needs a budget of %.3f ms", u.flow,
                        u.needed_budget_ms)
    if not 0 <= args.grpc_port < 65536:
        raise GraftInputError(f"--grpc-port must be in 0..65535 (0: no gRPC), got "
                              f"{args.grpc_port}", field="grpc_port")
    import os

    from graft.runtime.http import TOKEN_ENV

    token = args.admin_token or os.environ.get(TOKEN_ENV) or None
    replan = None
    if args.replan_every is not None:
        from graft.serving.replan import ReplanConfig

        if not 0.1 <= args.replan_every <= 86400:
            raise GraftInputError("--replan-every must be in [0.1, 86400] seconds, got "
                                  f"{args.replan_every}", field="replan_every")
        if not 0 <= args.hysteresis < 1:
            raise GraftInputError(f"--hysteresis must be in [0, 1), got {args.hysteresis}",
                                  field="hysteresis")
        replan = ReplanConfig(period_s=args.replan_every, window_s=args.replan_every,
                              hysteresis=args.hysteresis)
    serve(plan, workload, cost, host=args.host, port=args.port,
          grpc_port=args.grpc_port or None, device=args.device, weights=args.weights,
          seed=args.seed, admin_token=token, replan=replan,
          planner=make_planner(args.planner))
    return 0


def cmd_loadgen(args: argparse.Namespace) -> int:
    import asyncio

    from graft.client import loadgen

    if args.duration <= 0 or args.duration > 24 * 3600:
        raise GraftInputError(f"--duration must be in (0, 86400] seconds, got {args.duration}",
                              field="duration")
    progress = loadgen.progress_stream(not args.quiet)
    if args.mode == "trace":
        from graft.cost.registry import make_cost_model
        from graft.sim.run import scenario_requests
        from graft.sim.scenario import load_scenario

        if not args.scenario:
            raise GraftInputError("--mode trace needs --scenario (a file or 'paper')")
        sc = load_scenario(args.scenario, trace_dir=args.trace_dir)
        sc = dataclasses.replace(sc, duration_s=min(sc.duration_s, args.duration))
        reqs, _ = scenario_requests(sc, make_cost_model(sc.cost_model), sc.seed)
        report = asyncio.run(loadgen.run_open_loop(args.url, loadgen.trace_schedule(reqs),
                                                   progress=progress))
        report.mode = "trace"
    else:
        from graft.workload.flows import load_workload

        if not args.workload:
            raise GraftInputError(f"--mode {args.mode} needs --workload WORKLOAD.json")
        flows = load_workload(args.workload).flows
        if args.mode == "poisson":
            schedule = loadgen.poisson_schedule(flows, args.duration, args.seed)
            report = asyncio.run(loadgen.run_open_loop(args.url, schedule, progress=progress))
        else:
            if not 1 <= args.concurrency <= 4096:
                raise GraftInputError("--concurrency must be in 1..4096", field="concurrency")
            report = asyncio.run(loadgen.run_closed_loop(
                args.url, flows, concurrency=args.concurrency, duration_s=args.duration,
                progress=progress))
    print(report.table())
    if args.json:
        report.write_json(args.json)
    if args.csv:
        report.write_csv(args.csv)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from graft.demo import run_demo

    if not 1 <= args.duration <= 600:
        raise GraftInputError(f"--duration must be in [1, 600] s, got {args.duration}",
                              field="duration")
    return run_demo(args.output, duration_s=args.duration)


def _int_list(text: str, flag: str) -> list[int]:
    try:
        values = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise GraftInputError(f"{flag} takes integers separated by commas, got {text!r}") from None
    if not values or min(values) < 1:
        raise GraftInputError(f"{flag} needs positive integers, got {text!r}")
    return values


def _float_list(text: str, flag: str) -> list[float]:
    try:
        values = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise GraftInputError(f"{flag} takes numbers separated by commas, got {text!r}") from None
    if not values or not all(0 < v <= 1 for v in values):
        raise GraftInputError(f"{flag} needs shares in (0, 1], got {text!r}")
    return values


# --- parser ---------------------------------------------------------------------------------
class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every input error
        self.exit(2, f"graft: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="graft", description="Plan and serve hybrid (split) DNN inference.")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, fn: Callable[[argparse.Namespace], int], help: str
            ) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help, description=help)
        sp.set_defaults(func=fn)
        return sp

    sp = add("models", cmd_models, "list the models' block chains")
    sp.add_argument("--json", action="store_true", help="print the block table as JSON")
    sp.add_argument("--regenerate", action="store_true",
                    help="re-measure every model with torch and rewrite the committed table")
    sp.add_argument("--check", action="store_true",
                    help="re-measure and compare with the committed table (exit 1 on a change)")

    sp = add("cost", cmd_cost, "latency_ms of stages read as a JSON list on stdin")
    sp.add_argument("--cost-model", default=DEFAULT_COST_MODEL)

    sp = add("plan", cmd_plan, "plan a workload")
    sp.add_argument("workload", help="workload JSON file (- for stdin)")
    sp.add_argument("--planner", default=DEFAULT_PLANNER)
    sp.add_argument("--cost-model", default=DEFAULT_COST_MODEL)
    sp.add_argument("-o", "--output", help="plan JSON file (default: stdout)")
    sp.add_argument("--allow-partial", action="store_true",
                    help="plan the servable flows and list the others as unserved")
    sp.add_argument("--max-utilization", type=float, default=1.0,
                    help="run every stage at most this fraction of its capacity (headroom "
                         "for bursty arrivals; default 1.0, the bare rules)")

    sp = add("verify", cmd_verify, "check a plan against a workload and a cost model")
    sp.add_argument("workload")
    sp.add_argument("plan")
    sp.add_argument("--cost-model", default=None,
                    help="cost model to check against (default: the plan's own)")
    sp.add_argument("--allow-partial", action="store_true",
                    help="accept flows the plan lists as unserved")

    sp = add("compare", cmd_compare, "every planner on one workload, side by side")
    sp.add_argument("workload", nargs="?", help="workload JSON (default: built-in demo)")
    sp.add_argument("--planner", action="append", help="planner to run (repeatable)")
    sp.add_argument("--cost-model", default=DEFAULT_COST_MODEL)
    sp.add_argument("--seed", type=int, default=0)

    sp = add("profile", cmd_profile, "measure block latencies into a profile table")
    sp.add_argument("models", nargs="+")
    sp.add_argument("--device", default="cpu")
    sp.add_argument("--batches", default="1,2,4,8")
    sp.add_argument("--shares", default=None,
                    help="shares to measure (default: every whole number of cores on CPU)")
    sp.add_argument("--warmup", type=int, default=3)
    sp.add_argument("--repeats", type=int, default=10)
    sp.add_argument("-o", "--output", required=True)

    sp = add("calibrate", cmd_calibrate, "analytic cost model vs published measurements")
    sp.add_argument("--data-dir", default=None,
                    help="calibration data (default: ../shared/data/calibration if present)")
    sp = add("simulate", cmd_simulate,
             "simulate a scenario (clients on traces, re-planning) for several planners")
    sp.add_argument("scenario", help="scenario JSON file, or a built-in name (paper)")
    sp.add_argument("--planner", action="append",
                    help="planner to run (repeatable; default: "
                         + ", ".join(DEFAULT_SIM_PLANNERS) + ")")
    sp.add_argument("--trace-dir", default=None,
                    help="where relative trace paths resolve (default: the scenario's folder)")
    sp.add_argument("--seed", type=int, default=None,
                    help="seed of requests, traces and jitter (default: the scenario's)")
    sp.add_argument("-o", "--output", required=True, help="folder for the report")

    sp = add("serve", cmd_serve,
             "serve a plan over the Open Inference Protocol (Triton's HTTP and gRPC)")
    sp.add_argument("--plan", help="plan JSON to serve (with --workload: checked against it)")
    sp.add_argument("--workload", help="workload JSON: planned with --planner, or the flows "
                                       "of --plan")
    sp.add_argument("--planner", default=DEFAULT_PLANNER)
    sp.add_argument("--cost-model", default=None,
                    help=f"cost model (default: the plan's own, or {DEFAULT_SERVE_COST_MODEL} "
                         "to plan a workload)")
    sp.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    sp.add_argument("--weights", default=None,
                    help="a state_dict file (single-model plans) or a folder of <model>.pt")
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    sp.add_argument("--grpc-port", type=int, default=8001,
                    help="gRPC port (default 8001; 0: no gRPC)")
    sp.add_argument("--seed", type=int, default=0, help="seed of random weights")
    sp.add_argument("--admin-token", default=None,
                    help="token the admin endpoints require (default: $GRAFT_ADMIN_TOKEN; "
                         "without one they are off)")

    sp.add_argument("--replan-every", type=float, default=None,
                    help="re-plan the arrivals of the last S seconds every S seconds with "
                         "--planner, and swap when the simulator's rules say so")
    from graft.serving.replan import ReplanConfig

    sp.add_argument("--hysteresis", type=float, default=ReplanConfig.hysteresis,
                    help="re-planning swaps for savings above this fraction (default "
                         f"{ReplanConfig.hysteresis:g})")

    sp = add("demo", cmd_demo, "plan, simulate and serve, end to end, with no input files")
    sp.add_argument("-o", "--output", default="demo-out", help="folder for what it writes")
    sp.add_argument("--duration", type=float, default=20.0,
                    help="seconds of load on the served model (default 20)")

    sp = add("loadgen", cmd_loadgen, "drive a server with client requests and measure it")
    sp.add_argument("url", help="the server's HTTP address, e.g. http://127.0.0.1:8000")
    sp.add_argument("--mode", choices=["poisson", "trace", "concurrency"], default="poisson")
    sp.add_argument("--workload", help="workload JSON: its flows' rates, partitions, budgets")
    sp.add_argument("--scenario", help="scenario (file or 'paper') for --mode trace")
    sp.add_argument("--trace-dir", default=None)
    sp.add_argument("--duration", type=float, default=20.0, help="seconds (default 20)")
    sp.add_argument("--concurrency", type=int, default=8)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--json", default=None, help="write the results as JSON here")
    sp.add_argument("--csv", default=None, help="write a perf_analyzer-style CSV here")
    sp.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except GraftInputError as e:
        print(f"graft: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
