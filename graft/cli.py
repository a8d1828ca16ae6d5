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
from graft.jsonio import check_output_dir, check_output_file, load_json, write_json

DEFAULT_PLANNER = "graft"
DEFAULT_COST_MODEL = "analytic:v100"
DEFAULT_SIM_PLANNERS = ("graft", "gslice", "nexus")
#: The cost model ``graft serve --workload`` plans with on this machine's CPU.
DEFAULT_SERVE_COST_MODEL = "profile:tiny-cpu"

log = logging.getLogger("graft")



# --- commands -------------------------------------------------------------------------------
def cmd_models(args: argparse.Namespace) -> int:
    if args.regenerate or args.check:
        if args.name:
            raise GraftInputError("--check and --regenerate measure every model; drop the "
                                  f"name {args.name!r}")
        from graft.models.measure import regenerate
        from graft.progress import Heartbeat
        from graft.wording import plural

        with Heartbeat("graft models: measuring the block table") as beat:
            diffs = regenerate(check=args.check, progress=beat.update)
        if args.check:
            for d in diffs:
                print(d)
            print("block table matches the models" if not diffs else
                  f"{plural(len(diffs), 'difference')} from the committed block table")
            return 1 if diffs else 0
        print("block table regenerated")
        return 0
    from graft.models.catalog import all_models, get_model
    from graft.models.describe import partition_table, summary_line

    models = [get_model(args.name)] if args.name else all_models()
    if args.json:
        write_json({"models": [m.to_json() for m in models]}, None)
        return 0
    if args.name:
        print(partition_table(models[0]))
        return 0
    for m in models:
        print(summary_line(m))
    print("\n`graft models NAME` shows a model's partition points, shapes and sizes.")
    return 0


def _cost_query(item: Any, i: int) -> tuple[str, int, int, int, float]:
    from graft import fields, limits
    from graft.models.catalog import get_model

    where = f"[{i}]."
    item = fields.obj(item, f"[{i}]", COST_QUERY_FIELDS, prefix=where)
    model = get_model(fields.string(item, "model", where))
    start = fields.integer(item, "start", where)
    end = fields.integer(item, "end", where)
    if not 0 <= start < end <= model.num_blocks:
        raise GraftInputError(
            f"query [{i}] blocks [{start}, {end}) are not within 0..{model.num_blocks} of "
            f"{model.name}", field="end")
    batch = fields.integer(item, "batch", where, minimum=1)
    limits.BATCH.check(batch, f"query [{i}] asks for a batch of {{}}", field="batch")
    share = fields.number(item, "share", where, minimum=limits.MIN_SHARE, maximum=1)
    return model.name, start, end, batch, share


COST_QUERY_FIELDS = ("model", "start", "end", "batch", "share")


def cmd_cost(args: argparse.Namespace) -> int:
    from graft.cost.registry import make_cost_model

    cost = make_cost_model(args.cost_model)
    queries = load_json("-", "cost queries")
    if not isinstance(queries, list):
        raise GraftInputError("cost queries must be a JSON list of objects")
    queries = [_cost_query(q, i) for i, q in enumerate(queries)]  # all checked first
    out = [cost.latency_ms(*q) for q in queries]
    for i, ms in enumerate(out):
        if not math.isfinite(ms):
            raise GraftInputError(f"{cost.name} has no finite latency for query [{i}]")
    print(json.dumps(out))
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from graft import limits
    from graft.cost.registry import make_cost_model
    from graft.planner.headroom import plan_with_headroom
    from graft.planner.registry import make_planner
    from graft.workload.flows import load_workload

    planner = make_planner(args.planner)
    cost = make_cost_model(args.cost_model)
    check_output_file(args.output, "the plan")
    workload = load_workload(args.workload)
    u = args.max_utilization
    if not (math.isfinite(u) and 0 < u <= 1):
        raise GraftInputError(f"--max-utilization must be in (0, 1], got {u}",
                              field="max_utilization")
    limits.check_planning(workload.flows, cost, max_utilization=u)

    def make_plan(c: Any) -> Any:
        return plan_with_headroom(planner, workload, c, max_utilization=u,
                                  allow_partial=args.allow_partial)

    if args.cluster:
        from graft.plan.cluster import load_cluster
        from graft.planner.nodes import plan_on_cluster

        plan = plan_on_cluster(make_plan, workload, cost, load_cluster(args.cluster))
    else:
        plan = make_plan(cost)
    limits.GPUS.check(plan.gpus, f"the {plan.planner} plan uses {{}}")
    from graft.wording import devices, plural

    log.info("%s: %s, total share %.3f on %s (lower bound %.3f)%s",
             plan.planner, plural(len(plan.stages), "stage"), plan.total_share,
             devices(plan.gpus, cost), plan.lower_bound_share,
             f"; {plural(len(plan.unserved), 'flow')} unserved" if plan.unserved else "")
    write_json(plan.to_json(), args.output)
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    from graft.cost.registry import make_cost_model
    from graft.plan.plan import Plan
    from graft.plan.verify import verify
    from graft.workload.flows import load_workload

    workload = load_workload(args.workload)
    plan = Plan.from_json(load_json(args.plan, "plan"))
    cost = make_cost_model(args.cost_model or plan.cost_model)
    errors = verify(workload, plan, cost, allow_partial=args.allow_partial)
    from graft.wording import devices, plural

    if errors:
        for e in errors:
            print(f"violation: {e}")
        print(f"INVALID: {plural(len(errors), 'violation')}")
        return 1
    print(f"OK: {plural(len(plan.routes), 'flow')} routed over "
          f"{plural(len(plan.stages), 'stage')}, total share {plan.total_share:.3f} on "
          f"{devices(plan.gpus, cost)} ({plan.gpu_sharing}, {cost.name})"
          + (f", {len(plan.unserved)} unserved" if plan.unserved else ""))
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from graft import limits
    from graft.cost.registry import make_cost_model
    from graft.planner.compare import format_table, run_planners
    from graft.planner.registry import planner_names
    from graft.workload.flows import load_workload
    from graft.workload.synthetic import demo_workload

    cost = make_cost_model(args.cost_model)
    if args.workload:
        workload = load_workload(args.workload)
        limits.check_planning(workload.flows, cost)
        what = args.workload
    else:
        workload = demo_workload(cost, seed=args.seed)
        what = f"built-in demo workload (seed {args.seed})"
    names = args.planner or [n for n in planner_names() if n != "optimal"]
    from graft.wording import device_word, plural

    print(f"{what}: {plural(len(workload.flows), 'flow')} over "
          f"{plural(len(workload.models()), 'model')}, cost model {cost.name}\n")
    outcomes = run_planners(workload, cost, names)
    print(format_table(outcomes, unit=device_word(cost)))
    if all(o.total_share is None for o in outcomes):
        raise GraftInputError(f"no planner could plan {what}: {outcomes[0].note}")
    invalid = [o.planner for o in outcomes if o.total_share is not None and not o.valid]
    if invalid:
        _warn(f"{', '.join(invalid)} made a plan that fails verification (a bug; run "
              "graft verify on its plan for the violations)")
        return 1
    return 0


def _check_profile_size(args: argparse.Namespace, batches: tuple[int, ...],
                        shares: tuple[float, ...] | None) -> None:
    """Before any measurement: known models, batches within ``limits.BATCH``, and with the
    ``shares`` to measure, the work within ``limits.PROFILE_TFLOP`` and (on CPU) the
    largest batch's activations within half of this machine's memory."""
    import os

    from graft import limits
    from graft.models.catalog import get_model

    if args.warmup < 0 or args.repeats < 1:
        raise GraftInputError(f"need --warmup >= 0 and --repeats >= 1, got {args.warmup}, "
                              f"{args.repeats}")
    limits.BATCH.check(max(batches), "--batches asks for a batch of {}", field="batches")
    specs = [get_model(name) for name in args.models]
    if shares is None:
        return
    passes = sum(batches) * len(shares) * (args.warmup + args.repeats)
    flop = passes * sum(b.flops for m in specs for b in m.blocks)
    limits.PROFILE_TFLOP.check(math.ceil(flop / 1e12), "the measurements take about {}")
    if args.device == "cpu":
        peak = max(max(batches) * 2 * max(m.in_bytes(i) + b.out_bytes
                                          for i, b in enumerate(m.blocks))
                   + sum(b.param_bytes for b in m.blocks) for m in specs)
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        if peak > memory / 2:
            raise GraftInputError(
                f"a batch of {max(batches)} needs about {peak / 2**30:.1f} GiB, more than "
                f"half of this machine's {memory / 2**30:.1f} GiB; use smaller --batches",
                field="batches")


def cmd_profile(args: argparse.Namespace) -> int:

    check_output_file(args.output, "the profile")
    batches = tuple(_int_list(args.batches, "--batches"))
    shares = tuple(_float_list(args.shares, "--shares")) if args.shares else None
    _check_profile_size(args, batches, None)  # before torch loads
    from graft.cost.profiler import giveable_shares, merge_profiles, profile_model, write_profile

    shares = tuple(giveable_shares(args.device, shares))
    _check_profile_size(args, batches, shares)
    from graft.progress import Heartbeat

    def progress(msg: str) -> None:
        log.info("  %s", msg)
        beat.update(msg)

    parts = []
    with Heartbeat(f"graft profile on {args.device}") as beat:
        for name in args.models:
            log.info("profiling %s on %s", name, args.device)
            beat.update(f"profiling {name}")
            parts.append(profile_model(name, device=args.device, batches=batches,
                                       shares=shares, warmup=args.warmup,
                                       repeats=args.repeats, progress=progress))
    write_profile(merge_profiles(parts), args.output)
    print(f"wrote {args.output}: use it as --cost-model profile:{args.output}")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from graft.cost.calibration import report, require_data_dir

    require_data_dir(args.data_dir)  # exit 2 when the data are missing, not a stub report
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

    check_output_dir(args.output, "the report folder")
    scenario = load_scenario(args.scenario, trace_dir=args.trace_dir)
    planners = args.planner or list(DEFAULT_SIM_PLANNERS)
    for name in planners:
        make_planner(name)
    from graft.progress import Heartbeat
    from graft.sim.report import answer

    # the bar redraws in place on a terminal (or with -v); elsewhere a line every few seconds
    bar = _progress_bar(args.verbose or sys.stderr.isatty())
    with Heartbeat(f"graft simulate {scenario.name}", enabled=bar is None) as beat:
        def progress(planner: str, done: int, total: int) -> None:
            beat.update(f"{planner} {done}/{total} epochs")

        runs = run_scenario(scenario, planners, seed=args.seed, progress=bar or progress)
    try:
        os.makedirs(args.output, exist_ok=True)
    except OSError as e:
        raise GraftInputError(f"cannot create {args.output!r}: {e.strerror}") from None
    paths = write_report(args.output, scenario.name, runs)
    for name, r in runs.items():
        log.info("%s: attainment %.3f, p99 %.0f ms, %.1f share-seconds, %.2f mean %ss, "
                 "%d switches", name, r.slo_attainment, r.p99_ms, r.share_seconds,
                 r.mean_gpus, r.device_word, r.plans)
    print("\n".join(answer(runs)))
    print(f"wrote {len(paths)} files to {args.output} (report.md: the numbers, and the "
          "misses per client group)")
    return _served_any(runs)


def _served_any(runs: dict[str, Any]) -> int:
    """Warn about every planner that served no request; 1 when none served any."""
    idle = []
    for name, r in runs.items():
        if r.requests == 0:
            idle.append(name)
            _warn(f"{name}: the scenario's clients sent no request to the server")
        elif r.completed == 0:
            idle.append(name)
            _warn(f"{name}: none of {r.requests} requests was served ({r.rejected} rejected "
                  f"at admission, {r.dropped} dropped); see report.md for why")
    return 1 if runs and len(idle) == len(runs) else 0


def _warn(message: str) -> None:
    print(f"graft: warning: {message}", file=sys.stderr)


def _serve_on_ray(args: argparse.Namespace, workload: Any) -> int:
    """``graft serve --ray ADDRESS``: the plan (given, or the workload planned on the Ray
    cluster's GPU nodes) served by an agent on every node."""
    import os

    from graft import limits
    from graft.cost.registry import make_cost_model
    from graft.plan.plan import Plan
    from graft.planner.registry import make_planner
    from graft.runtime.http import TOKEN_ENV
    from graft.runtime.repository import workload_of

    try:
        import ray  # noqa: F401
    except ImportError:
        raise GraftInputError("--ray needs Ray: pip install -e .[ray]") from None
    from graft.runtime.ray_cluster import RayController, serve_on_ray

    if args.replan_every is not None:
        raise GraftInputError("--replan-every is for one machine; on a cluster the "
                              "controller re-plans when nodes leave or join",
                              field="replan_every")
    if not 0 < args.cluster_port < 65536:
        raise GraftInputError(f"--cluster-port must be in 1..65535, got {args.cluster_port}",
                              field="cluster_port")
    plan = Plan.from_json(load_json(args.plan, "plan")) if args.plan is not None else None
    cost = make_cost_model(args.cost_model or (plan.cost_model if plan is not None
                                               else DEFAULT_SERVE_COST_MODEL))
    if workload is None:
        workload = workload_of(plan)
    limits.check_planning(workload.flows, cost)
    planner = make_planner(args.planner)
    controller = RayController(
        args.ray, workload, cost, lambda c: planner.plan(workload, c, allow_partial=True),
        plan=plan, port=args.port, grpc_port=args.grpc_port or None, device=args.device,
        weights=args.weights, seed=args.seed,
        admin_token=args.admin_token or os.environ.get(TOKEN_ENV) or None)
    serve_on_ray(controller, host=args.host, cluster_port=args.cluster_port)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from graft import limits
    from graft.cost.registry import make_cost_model
    from graft.plan.plan import Plan
    from graft.plan.verify import verify
    from graft.planner.registry import make_planner
    from graft.runtime.server import serve
    from graft.wording import plural
    from graft.workload.flows import load_workload

    if args.plan is None and args.workload is None:
        raise GraftInputError("graft serve needs --plan PLAN.json or --workload WORKLOAD.json")
    if not 0 < args.port < 65536:
        raise GraftInputError(f"--port must be in 1..65535, got {args.port}", field="port")
    workload = load_workload(args.workload) if args.workload else None
    if args.ray is not None:
        return _serve_on_ray(args, workload)
    if args.plan is not None:
        plan = Plan.from_json(load_json(args.plan, "plan"))
        cost = make_cost_model(args.cost_model or plan.cost_model)
        if workload is not None:
            errors = verify(workload, plan, cost, allow_partial=True)
            if errors:
                raise GraftInputError(f"the plan fails verification "
                                      f"({plural(len(errors), 'violation')}), first: "
                                      f"{errors[0]}")
    else:
        cost = make_cost_model(args.cost_model or DEFAULT_SERVE_COST_MODEL)
        limits.check_planning(workload.flows, cost)
        plan = make_planner(args.planner).plan(workload, cost, allow_partial=True)
        for u in plan.unserved:
            log.warning("flow %s is not served: it needs a budget of %.3f ms", u.flow,
                        u.needed_budget_ms)
    if not 0 <= args.grpc_port < 65536:
        raise GraftInputError(f"--grpc-port must be in 0..65535 (0: no gRPC), got "
                              f"{args.grpc_port}", field="grpc_port")
    limits.WORKERS.check(len(plan.processes()), "the plan runs {}")
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

    from graft import limits
    from graft.client import loadgen

    if not 0 < args.duration <= 24 * 3600:  # NaN too
        raise GraftInputError(f"--duration must be in (0, 86400] seconds, got {args.duration}",
                              field="duration")
    check_output_file(args.json, "--json")
    check_output_file(args.csv, "--csv")
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
        loadgen.check_server(args.url)
        report = asyncio.run(loadgen.run_open_loop(args.url, loadgen.trace_schedule(reqs),
                                                   progress=progress))
        report.mode = "trace"
    else:
        from graft.workload.flows import load_workload

        if not args.workload:
            raise GraftInputError(f"--mode {args.mode} needs --workload WORKLOAD.json")
        flows = load_workload(args.workload).flows
        limits.REQUESTS.check(math.ceil(sum(f.rate for f in flows) * args.duration),
                              "its flows over --duration make about {}")
        if args.mode == "concurrency" and not 1 <= args.concurrency <= 4096:
            raise GraftInputError("--concurrency must be in 1..4096", field="concurrency")
        loadgen.check_server(args.url)
        if args.mode == "poisson":
            schedule = loadgen.poisson_schedule(flows, args.duration, args.seed)
            report = asyncio.run(loadgen.run_open_loop(args.url, schedule, progress=progress))
        else:
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
    check_output_dir(args.output, "the demo's folder")
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


def _seed(text: str) -> int:
    """``--seed``: an integer >= 0 (what numpy's generators take)."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


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
        # -v after the command too; SUPPRESS keeps a -v given before it
        sp.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                        help="log progress to stderr")
        return sp

    sp = add("models", cmd_models, "list the models' block chains, or one model's "
             "partition points")
    sp.add_argument("name", nargs="?", help="a model: its blocks, partition points, shapes "
                                            "and activation sizes")
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
    sp.add_argument("--cluster", metavar="CLUSTER.json",
                    help="place the plan's GPUs on this cluster's nodes: a JSON file, or "
                         "ray:ADDRESS (ray:auto) for a running Ray cluster's GPU nodes")

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
    sp.add_argument("--seed", type=_seed, default=0)

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
    sp.add_argument("--seed", type=_seed, default=None,
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
    sp.add_argument("--seed", type=_seed, default=0, help="seed of random weights")
    sp.add_argument("--admin-token", default=None,
                    help="token the admin endpoints require (default: $GRAFT_ADMIN_TOKEN; "
                         "without one they are off)")

    sp.add_argument("--ray", metavar="ADDRESS", default=None,
                    help="serve across the GPU nodes of the Ray cluster at ADDRESS ('auto': "
                         "the one this machine belongs to): an agent per node, re-planning "
                         "when nodes leave or join (needs pip install -e .[ray])")
    sp.add_argument("--cluster-port", type=int, default=8010,
                    help="with --ray: the controller's port for /v2/admin/cluster and "
                         "/prometheus/targets (default 8010)")
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
    sp.add_argument("--seed", type=_seed, default=0)
    sp.add_argument("--json", default=None, help="write the results as JSON here")
    sp.add_argument("--csv", default=None, help="write a perf_analyzer-style CSV here")
    sp.add_argument("--quiet", action="store_true", help="no progress line")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. Bad input, and output that cannot be written (a closed or full
    stdout, an unwritable path), exit 2 with one line; a reader that went away (``| head``)
    exits 0 quietly; Ctrl-C exits 130 with one line."""
    from graft.streams import StdoutError, guarded_stdout, quiet_stdout, say

    try:
        with guarded_stdout():
            args = build_parser().parse_args(argv)
            logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                                format="%(levelname)s %(name)s: %(message)s")
            code = args.func(args)
            sys.stdout.flush()
            return code
    except GraftInputError as e:
        if isinstance(e, StdoutError):
            quiet_stdout()
        say(f"graft: error: {e}")
        return 2
    except BrokenPipeError:
        quiet_stdout()
        return 0
    except OSError as e:  # e.g. a full disk under an output folder while a report is written
        where = f": {e.filename}" if e.filename else ""
        say(f"graft: error: {e.strerror or e}{where}")
        return 2
    except KeyboardInterrupt:
        say("graft: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
