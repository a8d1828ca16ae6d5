"""Simulator benchmark: graft vs gslice vs nexus on real LTE uplinks; writes bench/results/sim.md.

    make bench-sim TRACES=DIR      # out/bench/sim.md (ignored by git); UPDATE=1 rewrites
                                   # bench/results/sim.md; TRACES defaults to ../shared/data/traces
    python bench/sim_bench.py --duration 20 --output /tmp/sim.md   # a shorter run
    python bench/sim_bench.py --trace-root DIR ...                # other trace files

Traces (read in place, never copied; the run stops with a message when they are absent):

- ``mahimahi-lte``: ``<trace-root>/mahimahi-cellular/*LTE*.up`` (Mahimahi LTE uplinks);
- ``nyu-mets``: ``<trace-root>/nyu-mets-lte/`` as a directory (its iperf text rows skipped).

For each trace set and each of the five models one scenario is built (a JSON dict through
``graft.sim.scenario.parse_scenario``): ``CLIENTS_PER_TRACE`` clients per (device, trace
file) on a phone-npu / jetson / phone-cpu mix, each sending Poisson requests at ``RATE``
req/s with the model's SLO (``SLO_MS``), int8 activations (``activation_bytes_per_value`` 1)
and a JPEG-sized input at p = 0 (``jpeg_bytes``), re-planned as in ``paper`` (every 10 s from
the last 10 s, hysteresis 0.05, start-up 1 s, 80% utilisation, 5% jitter, analytic:v100).
``run_scenario`` serves the same requests with every planner. Overall figures pool the
per-model runs (share-seconds summed; attainment and p99 over all their requests): models do
not share GPUs across scenarios.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from graft.errors import GraftInputError  # noqa: E402
from graft.models.catalog import get_model  # noqa: E402
from graft.sim.run import PlannerRun, run_scenario  # noqa: E402
from graft.sim.scenario import TRACE_SUFFIXES, Scenario, parse_scenario  # noqa: E402
from graft.workload.traces import load_trace  # noqa: E402

PLANNERS = ("graft", "gslice", "nexus")
MODELS = ("mobilenet_v2", "resnet50", "inception_v3", "vgg16", "vit_b_16")
#: End-to-end SLO per model, ms: tighter for the small models (mobile vision: 200-500 ms).
SLO_MS = {"mobilenet_v2": 200.0, "resnet50": 300.0, "inception_v3": 400.0,
          "vgg16": 500.0, "vit_b_16": 500.0}
DEVICES = ("phone-npu", "jetson", "phone-cpu")
#: Requests per second per client (mobile vision: a few frames a second).
RATE = 5.0
#: Clients per (device, trace file) in the Mahimahi set; NYU-METS gets one per file.
CLIENTS_PER_TRACE = 3
RTT_MS = 40.0
#: Bits per pixel of a JPEG frame, an assumption: quality ~90 JPEG of natural images runs at
#: roughly 2-5 bits per pixel; 4 is the conservative (larger) end.
JPEG_BITS_PER_PIXEL = 4.0
REPLAN = {"period_s": 10, "window_s": 10, "hysteresis": 0.05, "startup_s": 1}
DEFAULT_ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "traces"
TRACE_SETS = ("mahimahi-lte", "nyu-mets")


def jpeg_bytes(model: str) -> int:
    """Bytes of a JPEG of the model's input frame: pixels x ``JPEG_BITS_PER_PIXEL`` / 8
    (224x224: 25,088 B; Inception's 299x299: 44,701 B)."""
    shape = get_model(model).input_shape
    pixels = math.prod(shape[-2:])
    return math.ceil(pixels * JPEG_BITS_PER_PIXEL / 8)


def _loads(path: Path) -> bool:
    """Whether ``path`` is a trace file (the scenario loader skips the others)."""
    try:
        load_trace(path, skip_bad_rows=True)
    except GraftInputError:
        return False
    return True


def trace_sources(root: Path) -> dict[str, list[tuple[str, int]]]:
    """Per trace set, the (trace path, clients per device) groups; SystemExit with a message
    when a set is missing."""
    mm = sorted((root / "mahimahi-cellular").glob("*LTE*.up"))
    nyu = root / "nyu-mets-lte"
    nyu_files = [p for p in sorted(nyu.rglob("*")) if p.is_file()
                 and not p.name.startswith(".") and p.suffix.lower() in TRACE_SUFFIXES
                 and _loads(p)] if nyu.is_dir() else []
    missing = [f"{root / 'mahimahi-cellular'}/*LTE*.up"] if not mm else []
    missing += [f"{nyu}/ (trace files)"] if not nyu_files else []
    if missing:
        raise SystemExit(f"sim_bench: real traces not found: {', '.join(missing)}. Get the "
                         "Mahimahi cellular traces (github.com/ravinet/mahimahi, traces/) and "
                         "NYU-METS (github.com/NYU-METS/Main, Dataset/) into DIR/mahimahi-"
                         "cellular/ and DIR/nyu-mets-lte/, then run make bench-sim TRACES=DIR "
                         "(or --trace-root DIR); README.md, 'Data'.")
    return {"mahimahi-lte": [(str(p.resolve()), CLIENTS_PER_TRACE) for p in mm],
            "nyu-mets": [(str(nyu.resolve()), len(nyu_files))]}


def build_scenario(trace_set: str, model: str, groups: list[tuple[str, int]], *,
                   duration_s: float, seed: int = 0) -> Scenario:
    """One model's scenario on one trace set: every (device, trace) group."""
    clients = [{"count": count, "model": model, "device": dev, "slo_ms": SLO_MS[model],
                "rate": RATE, "trace": path, "rtt_ms": RTT_MS,
                "activation_bytes_per_value": 1, "input_bytes": jpeg_bytes(model)}
               for dev in DEVICES for path, count in groups]
    data = {"name": f"{trace_set}/{model}", "duration_s": duration_s, "seed": seed,
            "cost_model": "analytic:v100", "max_utilization": 0.8, "jitter": 0.05,
            "replan": {k: min(v, duration_s) if k != "startup_s" else v
                       for k, v in REPLAN.items()},
            "clients": clients}
    return parse_scenario(data, name=data["name"])


def _p99(lat: list[float]) -> float:
    return float(np.percentile(lat, 99)) if lat else math.nan


def run_all(root: Path, duration_s: float, seed: int = 0, *, trace_sets=TRACE_SETS,
            models=MODELS, log=print) -> dict:
    """``{(trace_set, model): (scenario, {planner: PlannerRun}, generation+run wall s)}``."""
    sources = trace_sources(root)
    out = {}
    for ts in trace_sets:
        for m in models:
            sc = build_scenario(ts, m, sources[ts], duration_s=duration_s, seed=seed)
            t0 = time.perf_counter()
            runs = run_scenario(sc, PLANNERS)
            wall = time.perf_counter() - t0
            g = runs["graft"]
            log(f"{ts:13s} {m:13s} {sc.num_clients:4d} clients {g.requests:7d} req "
                f"{wall:6.1f} s  att graft {g.slo_attainment:.3f} gslice "
                f"{runs['gslice'].slo_attainment:.3f}")
            out[(ts, m)] = (sc, runs, wall)
    return out


def _fmt(x: float, spec: str = ".1f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def _rows(label: str, runs: dict[str, PlannerRun], lat: dict[str, list[float]]) -> list[str]:
    base = runs["gslice"].share_seconds
    rows = []
    for p in PLANNERS:
        r = runs[p]
        ratio = r.share_seconds / base if base > 0 else math.nan
        rows.append(f"| {label} | {p} | {r.requests} | {_fmt(r.share_seconds)} | "
                    f"{_fmt(ratio, '.2f')} | {_fmt(r.share_seconds_floor / base, '.2f')} | "
                    f"{r.slo_attainment:.4f} | {r.attainment_ceiling:.4f} | "
                    f"{_fmt(_p99(lat[p]), '.0f')} |")
    return rows


def _pooled(results: list[dict[str, PlannerRun]]) -> tuple[dict[str, PlannerRun], dict]:
    """Per planner, a summary over several runs (share-seconds summed; attainment pooled)."""
    from dataclasses import replace

    pooled, lat = {}, {}
    for p in PLANNERS:
        rs = [r[p] for r in results]
        n = sum(r.requests for r in rs)
        on = sum(r.on_time for r in rs)
        lat[p] = [x for r in rs for x in r.latencies_ms]
        ceiling = sum(r.attainment_ceiling * r.requests for r in rs) / n if n else 1.0
        pooled[p] = replace(rs[0], requests=n, on_time=on, slo_attainment=on / n if n else 0.0,
                            attainment_ceiling=ceiling,
                            share_seconds=sum(r.share_seconds for r in rs),
                            share_seconds_floor=sum(r.share_seconds_floor for r in rs),
                            wall_s=sum(r.wall_s for r in rs),
                            plan_s=sum(r.plan_s for r in rs),
                            serve_s=sum(r.serve_s for r in rs))
    return pooled, lat


def report(results: dict, *, duration_s: float, command: str, total_wall: float) -> str:
    lines = [
        "# Simulator benchmark: graft vs gslice vs nexus on real LTE uplinks", "",
        f"Command: `{command}`. Machine: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, one BLAS thread. "
        f"Date: {time.strftime('%Y-%m-%d')}. Total wall time {total_wall:.0f} s.", "",
        "Set-up (`bench/sim_bench.py`): one scenario per trace set and model; clients on a "
        f"{' / '.join(DEVICES)} mix, Poisson at {RATE:g} req/s each, RTT {RTT_MS:g} ms, "
        "int8 activations (`activation_bytes_per_value` 1) and a JPEG-sized input at p = 0 "
        f"(`input_bytes` = pixels x {JPEG_BITS_PER_PIXEL:g} bit / 8, an assumption: 25,088 B "
        "at 224x224, 44,701 B for Inception's 299x299); SLOs "
        + ", ".join(f"{m} {SLO_MS[m]:g} ms" for m in MODELS)
        + f"; {duration_s:g} s simulated per scenario, re-planned every "
        f"{min(REPLAN['period_s'], duration_s):g} s from the last window (hysteresis 0.05, "
        "start-up 1 s), 80% max utilisation, 5% execution jitter, `analytic:v100`. "
        "Mahimahi: the four `*LTE*.up` files, "
        f"{CLIENTS_PER_TRACE} clients per (device, file); NYU-METS: the directory, one client "
        "per file per device. Every planner serves the same requests. Attainment counts every "
        "request (client-side misses: uploads that leave less budget than the server needs "
        "are the same for every planner); the ceiling is the share of requests whose budget is "
        "at least the fastest their fragment can run, which no planner can exceed. Requests "
        "whose budget is below their route's least latency are rejected on arrival (admission "
        "control). The floor (`share_seconds_floor`, the same for every planner of a row) is the "
        "least share-seconds any spatial planner could hold under this controller: at every "
        "instant the serving plan was planned from an earlier window, and costs at least that "
        "window's `share_floor` (the rate lower bound with headroom, or the share the tightest "
        "flow's fragment needs to fit half its budget, whichever is larger). \"floor / "
        "gslice\" below 0.6 is where the 0.6x target is not ruled out. "
        "Overall rows pool the per-model scenarios (share-seconds summed; models do not share "
        "GPUs across scenarios).", "",
    ]
    by_set: dict[str, list] = {}
    for (ts, m), (sc, runs, wall) in results.items():
        by_set.setdefault(ts, []).append((m, sc, runs, wall))
    all_runs = []
    verdicts = []
    for ts, items in by_set.items():
        lines += [f"## {ts}", "",
                  "| model | planner | requests | share-seconds | ratio to gslice | "
                  "floor / gslice | attainment | ceiling | p99 ms |",
                  "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for m, sc, runs, _ in items:
            lines += _rows(f"{m} ({sc.num_clients} clients, SLO {SLO_MS[m]:g} ms)", runs,
                           {p: runs[p].latencies_ms for p in PLANNERS})
            verdicts.append((f"{ts}/{m}", runs))
        pooled, lat = _pooled([r for _, _, r, _ in items])
        lines += _rows("**overall**", pooled, lat)
        verdicts.append((f"{ts}/overall", pooled))
        all_runs += [r for _, _, r, _ in items]
        lines.append("")
    pooled, lat = _pooled(all_runs)
    lines += ["## Both trace sets", "",
              "| | planner | requests | share-seconds | ratio to gslice | floor / gslice "
              "| attainment | ceiling | p99 ms |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += _rows("**overall**", pooled, lat)
    verdicts.append(("all/overall", pooled))
    n_req = sum(r["graft"].requests for r in all_runs)
    speeds = {p: sum(r[p].requests for r in all_runs) / sum(r[p].wall_s for r in all_runs)
              for p in PLANNERS}
    lines += ["", "## Simulator speed", "",
              "Simulated requests per wall second of planning + simulation (request "
              "generation and window observation, done once per scenario, excluded; "
              "`PlannerRun.sim_requests_per_s`, pooled over all "
              "scenarios), and the two parts: planning (`plan_s`: planning and switch "
              "decisions) and serving (`serve_s`: routing, simulating and tallying).", "",
              "| planner | requests | wall s | plan s | serve s | requests / s "
              "| serving requests / s |", "|---|---:|---:|---:|---:|---:|---:|"]
    for p in PLANNERS:
        w = sum(r[p].wall_s for r in all_runs)
        plan = sum(r[p].plan_s for r in all_runs)
        serve = sum(r[p].serve_s for r in all_runs)
        serving = n_req / serve if serve > 0 else math.nan
        lines.append(f"| {p} | {n_req} | {w:.1f} | {plan:.1f} | {serve:.1f} | "
                     f"{speeds[p]:,.0f} | {_fmt(serving, ',.0f')} |")
    # targets
    ratio_ok, att_ok, bad_ratio, bad_att = True, True, [], []
    for name, runs in verdicts:
        g, s = runs["graft"], runs["gslice"]
        ratio = g.share_seconds / s.share_seconds if s.share_seconds > 0 else math.nan
        if not (ratio <= 0.6 and g.slo_attainment >= s.slo_attainment):
            ratio_ok = False
            bad_ratio.append(f"{name} ({ratio:.2f}x, attainment {g.slo_attainment:.4f} vs "
                             f"{s.slo_attainment:.4f})")
        if s.slo_attainment >= 0.99 and g.slo_attainment < 0.99:
            att_ok = False
            bad_att.append(f"{name} ({g.slo_attainment:.4f})")
    ruled_out = [n for n, r in verdicts
                 if r["gslice"].share_seconds_floor > 0.6 * r["gslice"].share_seconds]
    reached = [n for n, r in verdicts if r["gslice"].slo_attainment >= 0.99]
    ceilings = [r["gslice"].attainment_ceiling for _, r in verdicts]
    speed = min(speeds.values())
    lines += ["", "## Targets", "",
              f"- graft at most 0.6x gslice's share-seconds at equal or better attainment: "
              f"**{'met' if ratio_ok else 'not met'}**"
              + ("" if ratio_ok else f" in {len(bad_ratio)} of {len(verdicts)} rows: "
                 + "; ".join(bad_ratio)) + ". No spatial planner can reach 0.6x on "
              + f"{len(ruled_out)} of these rows, where the floor is above it"
              + (f" ({', '.join(ruled_out)})" if ruled_out else "") + ".",
              f"- graft attainment >= 99% wherever gslice reaches it: "
              f"**{('met' if reached else 'met vacuously') if att_ok else 'not met'}**"
              + (f" (gslice reaches 99% in {len(reached)} of {len(verdicts)} rows"
                 + (f": {', '.join(reached)})" if reached else
                    f"; the attainment ceiling, what any planner could reach, is "
                    f"{min(ceilings):.1%}-{max(ceilings):.1%} on these rows)"))
              + ("" if att_ok else f"; graft below in {'; '.join(bad_att)}") + ".",
              f"- at least 100,000 simulated requests per wall second: "
              f"**{'met' if speed >= 1e5 else 'not met'}** (slowest planner {speed:,.0f}/s).",
              ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trace-root", type=Path, default=DEFAULT_ROOT,
                    help="folder holding mahimahi-cellular/ and nyu-mets-lte/ "
                         "(default ../shared/data/traces)")
    ap.add_argument("--duration", type=float, default=60.0, help="simulated s per scenario")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--output", default="out/bench/sim.md",
                    help="results file (default out/bench/sim.md, ignored by git)")
    a = ap.parse_args()
    models = tuple(a.models.split(","))
    t0 = time.perf_counter()
    results = run_all(a.trace_root, a.duration, a.seed, models=models,
                      log=lambda s: print(s, file=sys.stderr, flush=True))
    cmd = "python bench/sim_bench.py " + " ".join(sys.argv[1:])
    text = report(results, duration_s=a.duration, command=cmd.strip(),
                  total_wall=time.perf_counter() - t0)
    Path(a.output).parent.mkdir(parents=True, exist_ok=True)
    Path(a.output).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
