"""The simulator's output files: ``summary.json``, three PNG plots and ``report.md``.

``write_report`` takes the per-planner results of one scenario (``graft.sim.run.PlannerRun``)
and writes, into one folder:

- ``summary.json``: the headline numbers per planner, in a fixed schema;
- ``share_over_time.png``: total GPU share and GPUs in use over time, a step line per planner;
- ``latency_cdf.png``: the CDF of end-to-end latency of completed requests, per planner;
- ``attainment_by_model.png``: SLO attainment per model, a bar per planner;
- ``report.md``: the answer first (GPUs at peak and on average, attainment, why requests
  missed), every number side by side, the misses per client group, and the plots.

Plots are drawn on matplotlib's Agg canvas directly (no pyplot, no display, no global state).
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from graft.serving.metrics import MISS_REASONS
from graft.wording import plural

if TYPE_CHECKING:
    from graft.sim.run import PlannerRun

log = logging.getLogger(__name__)

SUMMARY = "summary.json"
SHARE_PLOT = "share_over_time.png"
CDF_PLOT = "latency_cdf.png"
ATTAINMENT_PLOT = "attainment_by_model.png"
REPORT = "report.md"

#: The baseline that share-seconds are compared against in report.md.
BASELINE = "gslice"

_DPI = 120


def write_report(outdir: str, scenario: str, runs: Mapping[str, PlannerRun],
                 slo_ms: float | None = None) -> list[str]:
    """Write every output file for one scenario into ``outdir``; return their paths.

    ``slo_ms``, when the scenario has a single SLO, is marked on the latency CDF.
    """
    os.makedirs(outdir, exist_ok=True)
    paths = [
        write_summary(os.path.join(outdir, SUMMARY), runs),
        plot_share_over_time(os.path.join(outdir, SHARE_PLOT), scenario, runs),
        plot_latency_cdf(os.path.join(outdir, CDF_PLOT), scenario, runs, slo_ms),
        plot_attainment_by_model(os.path.join(outdir, ATTAINMENT_PLOT), scenario, runs),
    ]
    paths.append(write_markdown(os.path.join(outdir, REPORT), scenario, runs))
    log.info("report for %s written to %s", scenario, outdir)
    return paths


def summary(runs: Mapping[str, PlannerRun]) -> dict:
    """The ``summary.json`` object: headline numbers per planner."""
    return {"planners": {name: {
        "requests": int(r.requests),
        "completed": int(r.completed),
        "rejected": int(r.rejected),
        "slo_attainment": float(r.slo_attainment),
        "attainment_ceiling": float(r.attainment_ceiling),
        "p50_ms": _float_or_none(r.p50_ms),
        "p99_ms": _float_or_none(r.p99_ms),
        "share_seconds": float(r.share_seconds),
        "share_seconds_floor": float(r.share_seconds_floor),
        "mean_gpus": float(r.mean_gpus),
        "peak_gpus": int(r.peak_gpus),
        "peak_share": float(r.peak_share),
        "misses": {k: int(v) for k, v in r.misses.items()},
        "per_group": r.per_group,
    } for name, r in runs.items()}}


def write_summary(path: str, runs: Mapping[str, PlannerRun]) -> str:
    with open(path, "w") as f:
        json.dump(summary(runs), f, indent=2, allow_nan=False)
        f.write("\n")
    return path


def plot_share_over_time(path: str, scenario: str, runs: Mapping[str, PlannerRun]) -> str:
    """Two stacked panels sharing the time axis: total share, and whole GPUs in use."""
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    share_ax, gpu_ax = fig.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    end = max((p[0] for r in runs.values() for p in r.share_timeline), default=0.0)
    for i, (name, r) in enumerate(runs.items()):
        if not r.share_timeline:
            share_ax.plot([], [], **_line(i), label=f"{name} (no timeline)")
            continue
        # A step function holds its last value to the end of the longest run.
        t = [p[0] for p in r.share_timeline] + [end]
        share = [p[1] for p in r.share_timeline]
        gpus = [p[2] for p in r.share_timeline]
        style = {"where": "post", "linewidth": 1.6, **_line(i)}
        share_ax.step(t, share + share[-1:], label=name, **style)
        gpu_ax.step(t, gpus + gpus[-1:], label=name, **style)
    unit = _unit(runs)
    share_ax.set_title(f"{unit} share over time: {scenario}")
    share_ax.set_ylabel(f"total share ({unit}s)")
    share_ax.set_ylim(bottom=0)
    share_ax.legend(loc="best")
    gpu_ax.set_ylabel(f"{unit}s in use")
    gpu_ax.set_xlabel("simulated time (s)")
    gpu_ax.set_ylim(bottom=0)
    gpu_ax.yaxis.get_major_locator().set_params(integer=True)
    for ax in (share_ax, gpu_ax):
        ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_latency_cdf(path: str, scenario: str, runs: Mapping[str, PlannerRun],
                     slo_ms: float | None = None) -> str:
    """The fraction of completed requests within each end-to-end latency, per planner."""
    fig = Figure(figsize=(8, 4.5), layout="constrained")
    ax = fig.subplots()
    for i, (name, r) in enumerate(runs.items()):
        lat = sorted(r.latencies_ms)
        if not lat:
            ax.plot([], [], **_line(i), label=f"{name} (none completed)")
            continue
        frac = [(k + 1) / len(lat) for k in range(len(lat))]
        ax.step([lat[0]] + lat, [0.0] + frac, where="post", linewidth=1.6, **_line(i),
                label=f"{name} ({len(lat)} completed)")
    if slo_ms is not None:
        ax.axvline(slo_ms, color="black", linestyle="--", linewidth=1.2,
                   label=f"SLO {slo_ms:g} ms")
    ax.set_title(f"End-to-end latency of completed requests: {scenario}")
    ax.set_xlabel("end-to-end latency (ms)")
    ax.set_ylabel("fraction of completed requests")
    ax.set_xlim(left=0)
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return _save(fig, path)


def plot_attainment_by_model(path: str, scenario: str, runs: Mapping[str, PlannerRun]) -> str:
    """Grouped bars: SLO attainment (%) of each model, one bar per planner."""
    models = sorted({m for r in runs.values() for m in r.attainment_by_model})
    width_in = min(14.0, max(6.0, 3.0 + 0.35 * len(models) * max(1, len(runs))))
    fig = Figure(figsize=(width_in, 4.5), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / max(1, len(runs))
    for i, (name, r) in enumerate(runs.items()):
        xs = [m + (i - (len(runs) - 1) / 2) * width for m in range(len(models))]
        ys = [100 * r.attainment_by_model.get(m, float("nan")) for m in models]
        bars = ax.bar(xs, ys, width=width, color=_color(i), label=name)
        # Label every bar so 0% and "model not in this run" are visible, not just absent.
        ax.bar_label(bars, labels=[f"{y:.0f}" for y in ys], fontsize=7)
        for x, y in zip(xs, ys):
            if y != y:  # NaN: matplotlib skips the bar and its label
                ax.text(x, 1, "n/a", ha="center", va="bottom", fontsize=7, color=_color(i))
    ax.set_xticks(range(len(models)), models, rotation=30 if len(models) > 6 else 0,
                  ha="right" if len(models) > 6 else "center")
    ax.set_title(f"SLO attainment by model: {scenario}")
    ax.set_xlabel("model")
    ax.set_ylabel("requests on time (%)")
    ax.set_ylim(0, 108)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="planner")
    return _save(fig, path)


def write_markdown(path: str, scenario: str, runs: Mapping[str, PlannerRun]) -> str:
    with open(path, "w") as f:
        f.write(markdown(scenario, runs))
    return path


#: How report.md and ``graft simulate`` name the miss reasons of ``MISS_REASONS``.
MISS_LABELS = {"client_budget": "client budget too small", "admission": "admission",
               "late": "late (queueing)", "dropped": "dropped (queueing)"}


def _unit(runs: Mapping[str, PlannerRun]) -> str:
    return next(iter(runs.values())).device_word if runs else "GPU"


def answer(runs: Mapping[str, PlannerRun]) -> list[str]:
    """One line per planner: GPUs needed at peak and on average, attainment, why requests
    missed (``graft simulate`` prints these; report.md starts with them)."""
    lines = []
    for name, r in runs.items():
        unit = r.device_word
        missed = r.requests - r.on_time
        why = ", ".join(f"{r.misses[k]:,} {MISS_LABELS[k]}" for k in MISS_REASONS
                        if r.misses.get(k))
        lines.append(
            f"{name}: {plural(r.peak_gpus, unit)} at peak ({r.mean_gpus:.2f} on average, "
            f"{r.share_seconds:.1f} share-seconds); {100 * r.slo_attainment:.1f}% of "
            f"{plural(r.requests, 'request')} on time (ceiling "
            f"{100 * r.attainment_ceiling:.1f}%); {plural(missed, 'miss', 'misses')}"
            + (f": {why}" if why else ""))
    return lines


def misses_table(r: PlannerRun) -> list[str]:
    """report.md's table of one planner's misses per client group."""
    head = ["group", "clients", "requests", "on time", *MISS_LABELS.values()]
    lines = ["| " + " | ".join(head) + " |", "|---|---|" + "---:|" * (len(head) - 2)]
    for g, v in r.per_group.items():
        lines.append(f"| {g} | {v['label']} | {v['requests']:,} | "
                     f"{100 * v['slo_attainment']:.1f}% | "
                     + " | ".join(f"{v[k]:,}" for k in MISS_REASONS) + " |")
    return lines


def markdown(scenario: str, runs: Mapping[str, PlannerRun]) -> str:
    """``report.md``: the answer, one column per planner and one row per number, the misses
    per client group, then the plots."""
    unit = _unit(runs)
    rows: list[tuple[str, list[str]]] = [
        ("requests", [str(r.requests) for r in runs.values()]),
        ("completed", [str(r.completed) for r in runs.values()]),
        ("rejected", [str(r.rejected) for r in runs.values()]),
        ("dropped", [str(r.dropped) for r in runs.values()]),
        ("SLO attainment", [f"{100 * r.slo_attainment:.2f}%" for r in runs.values()]),
        ("attainment ceiling", [f"{100 * r.attainment_ceiling:.2f}%" for r in runs.values()]),
        ("p50 latency (ms)", [_ms(r.p50_ms) for r in runs.values()]),
        ("p99 latency (ms)", [_ms(r.p99_ms) for r in runs.values()]),
        ("share-seconds", [f"{r.share_seconds:.2f}" for r in runs.values()]),
        ("share-seconds floor", [f"{r.share_seconds_floor:.2f}" for r in runs.values()]),
        (f"peak {unit}s", [str(r.peak_gpus) for r in runs.values()]),
        (f"mean {unit}s", [f"{r.mean_gpus:.2f}" for r in runs.values()]),
        ("peak total share", [f"{r.peak_share:.2f}" for r in runs.values()]),
        ("plan switches", [str(r.plans) for r in runs.values()]),
        ("simulated req/s (wall clock)", [f"{r.sim_requests_per_s:,.0f}"
                                          for r in runs.values()]),
    ]
    base = runs.get(BASELINE)
    if base is not None:
        rows.append((f"share-seconds / {BASELINE}",
                     [_ratio(r.share_seconds, base.share_seconds) for r in runs.values()]))
    lines = [f"# Simulation report: {scenario}", "", *[f"- {a}" for a in answer(runs)], "",
             f"Peak {unit}s: the most held at once (a switching plan's old and new stages "
             f"overlap for a moment), what to provision; a share is a fraction of one {unit}.",
             "",
             "| | " + " | ".join(runs) + " |",
             "|---|" + "---:|" * len(runs)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    lines += ["", "SLO attainment counts on-time completions over all requests; the "
              "attainment ceiling is the share of requests whose server budget is at least the "
              "fastest their fragment can run (no planner can have the others on time); the "
              "share-seconds floor is the least any spatial planner (not nexus's whole-GPU time "
              "slicing) could hold under the same re-planning; latencies are end-to-end, of "
              "completed requests.", "",
              "## Why requests missed, per client group", "",
              "Each request that was not on time counts once, for the first reason that "
              "applies: **client budget too small** (the device, upload and download left "
              "less server budget than its fragment can run in: no server could make it; "
              "faster links, a later partition point or a looser SLO can), **admission** "
              "(rejected on arrival: the serving plan routes no flow of its fragment, or its "
              "budget is below its route's least latency), **late** (completed after its "
              "deadline, queued behind other batches) or **dropped** (its deadline passed "
              "before its batch formed, or unfinished at the end). Late and dropped are "
              "queueing: more headroom (`max_utilization`) helps.", ""]
    for name, r in runs.items():
        lines += [f"### {name}", "", *misses_table(r), ""]
    lines += ["## GPU share over time", "", f"![GPU share over time]({SHARE_PLOT})", "",
              "## Latency CDF", "", f"![latency CDF]({CDF_PLOT})", "",
              "## SLO attainment by model", "", f"![attainment by model]({ATTAINMENT_PLOT})",
              ""]
    return "\n".join(lines)


def _save(fig: Figure, path: str) -> str:
    FigureCanvasAgg(fig)  # attaches the Agg canvas: no backend lookup, no display
    fig.savefig(path, dpi=_DPI)
    return path


def _color(i: int) -> str:
    return f"C{i % 10}"


def _line(i: int) -> dict[str, str]:
    """Colour and dash per planner, so identical step lines stay visible on top of each other."""
    return {"color": _color(i), "linestyle": ("-", "--", ":", "-.")[i % 4]}


def _float_or_none(x: float | None) -> float | None:
    """None for "no value", whether it comes as None or NaN (NaN is not valid JSON)."""
    return None if x is None or math.isnan(x) else float(x)


def _ms(x: float | None) -> str:
    x = _float_or_none(x)
    return "n/a" if x is None else f"{x:.1f}"


def _ratio(x: float, base: float) -> str:
    return f"{x / base:.2f}x" if base > 0 else "n/a"
