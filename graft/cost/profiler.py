"""Measure a model's per-block latency on this machine: the tables ``profile:<path>`` reads.

Each block of the model's chain runs alone, on the output of the block before it, and its
latency is the median of ``repeats`` timed runs after ``warmup`` untimed ones.

* CPU: a share is the fraction of the cores used as intra-op threads,
  ``torch.set_num_threads(max(1, round(share * cores)))``; default shares ``k / cores``.
* CUDA: a share is the MPS active-thread percentage. MPS reads it from the environment when
  the process creates its CUDA context, so every share runs in its own worker process
  (``python -m graft.cost.profiler --worker ...``) started with
  ``CUDA_MPS_ACTIVE_THREAD_PERCENTAGE`` set. The limit only applies when an MPS control
  daemon runs (``nvidia-cuda-mps-control -d``); without one, the worker measures on a green
  context of ``share x SMs`` SMs where the driver and torch offer one
  (``graft.models.segments.green_stream``, as the serving workers do), else every share
  measures the whole GPU (the profile records ``"mps_daemon"`` and, per share,
  ``"green_context"``; a warning is logged). Each block is captured in a CUDA graph by the
  serving workers' ``SegmentRunner`` and its replay timed with CUDA events. Default shares:
  0.1, 0.2, ..., 1.0.

This module, :mod:`graft.models.chains` and :mod:`graft.models.segments` are the ones that
import torch (the last lazily).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from graft.cost.base import MPS_MAX_CLIENTS
from graft.cost.devices import GPU_CONTEXT_BYTES, MIB
from graft.cost.profiled import PROFILE_FORMAT, PROFILE_VERSION, validate_profile
from graft.errors import GraftInputError
from graft.models.chains import build_chain, input_shape
from graft.models.segments import SegmentRunner, green_stream

log = logging.getLogger(__name__)

#: progress(message): called after each measured (share, batch) pair on CPU, each share on
#: CUDA, with e.g. "tiny share=0.5 batch=4 (3/10)".
Progress = Callable[[str], None]

#: What a CPU stage process holds besides its weights and activations: the Python
#: interpreter with torch loaded (an assumption; about what ``import torch`` costs in RSS).
CPU_PROCESS_BYTES = 256 * MIB

MPS_ENV = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"


def cpu_cores() -> int:
    """Cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def cpu_name() -> str:
    """The CPU model name (from /proc/cpuinfo on Linux), else the machine type."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def giveable_shares(device: str, shares: Sequence[float] | None) -> list[float]:
    """The shares to measure on ``device`` (its defaults for None), rounded to 6 places;
    a share the device cannot give is refused rather than measured as another: on CPU a
    share is a whole number of cores (``k / cores``), under MPS a whole percentage."""
    if device == "cpu":
        cores = cpu_cores()
        if shares is None:
            return [round(k / cores, 6) for k in range(1, cores + 1)]
        unit, what = cores, f"a whole number of this machine's {cores} cores (k / {cores})"
    elif device == "cuda":
        if shares is None:
            return [k / 10 for k in range(1, 11)]
        unit, what = 100, "a whole MPS percentage (k / 100)"
    else:
        raise GraftInputError(f"device must be 'cpu' or 'cuda', got {device!r}")
    out = [round(float(s), 6) for s in shares]
    for s in out:
        k = round(s * unit)
        if k < 1 or abs(s * unit - k) > 1e-4:
            raise GraftInputError(f"share {s:g} cannot be given on {device}: a share is "
                                  f"{what}", field="shares")
    return out


def _check_args(batches: Sequence[int], shares: Sequence[float], warmup: int, repeats: int):
    if not batches or any(not isinstance(b, int) or b < 1 for b in batches):
        raise GraftInputError(f"batches must be integers >= 1, got {list(batches)}")
    if sorted(set(batches)) != list(batches):
        raise GraftInputError(f"batches must be strictly increasing, got {list(batches)}")
    if not shares or any(not 0.0 < s <= 1.0 for s in shares):
        raise GraftInputError(f"shares must lie in (0, 1], got {list(shares)}")
    if sorted(set(shares)) != list(shares):
        raise GraftInputError(f"shares must be strictly increasing, got {list(shares)}")
    if warmup < 0 or repeats < 1:
        raise GraftInputError(f"need warmup >= 0 and repeats >= 1, got {warmup}, {repeats}")


def _block_latencies_cpu(
    name: str, batch: int, warmup: int, repeats: int, seed: int, chain: Any
) -> list[float]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((batch, *input_shape(name)), generator=gen)
    out = []
    with torch.inference_mode():
        for block in chain.blocks:
            for _ in range(warmup):
                block(x)
            times = []
            for _ in range(repeats):
                t0 = time.perf_counter()
                y = block(x)
                times.append((time.perf_counter() - t0) * 1e3)
            out.append(statistics.median(times))
            x = y
    return out


def _profile_cpu(
    name: str,
    batches: Sequence[int],
    shares: Sequence[float],
    warmup: int,
    repeats: int,
    seed: int,
    progress: Progress | None,
) -> tuple[list[list[list[float]]], list[str]]:
    """Latencies indexed [block][batch][share], and the block names."""
    cores = cpu_cores()
    chain = build_chain(name, seed=seed)
    before = torch.get_num_threads()
    lat = [[[0.0] * len(shares) for _ in batches] for _ in chain.blocks]
    total, done = len(shares) * len(batches), 0
    try:
        for j, share in enumerate(shares):
            threads = max(1, round(share * cores))
            torch.set_num_threads(threads)
            for i, batch in enumerate(batches):
                per_block = _block_latencies_cpu(name, batch, warmup, repeats, seed, chain)
                for b, v in enumerate(per_block):
                    lat[b][i][j] = v
                done += 1
                log.info(
                    "%s share %g (%d threads) batch %d: %.3f ms",
                    name,
                    share,
                    threads,
                    batch,
                    sum(per_block),
                )
                if progress is not None:
                    progress(f"{name} share={share:g} batch={batch} ({done}/{total})")
    finally:
        torch.set_num_threads(before)
    return lat, list(chain.block_names)


# ----------------------------------------------------------------------------- CUDA


def mps_daemon_running() -> bool:
    """Whether an MPS control daemon's pipe exists (CUDA_MPS_PIPE_DIRECTORY, or the default)."""
    pipe_dir = os.environ.get("CUDA_MPS_PIPE_DIRECTORY", "/tmp/nvidia-mps")
    return os.path.exists(os.path.join(pipe_dir, "control"))


def _time_cuda(fn: Callable[[], Any], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start = torch.cuda.Event(enable_timing=True)
    end = torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(repeats):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def worker(
    name: str, batches: Sequence[int], warmup: int, repeats: int, seed: int, use_graph: bool
) -> dict[str, Any]:
    """Measure every block at every batch on the GPU, at the share this process was started
    with (CUDA_MPS_ACTIVE_THREAD_PERCENTAGE). Returns {"latency_ms": [block][batch], ...}."""
    if not torch.cuda.is_available():
        raise GraftInputError("device 'cuda' requested but torch sees no CUDA device")
    torch.set_float32_matmul_precision("high")  # TF32 matmuls, as the analytic presets assume
    dev = torch.device("cuda")
    chain = build_chain(name, seed=seed).to(dev)
    lat: list[list[float]] = [[0.0] * len(batches) for _ in chain.blocks]
    green = None
    if not mps_daemon_running():  # no MPS: bound the share's SMs with a green context
        green = green_stream(float(os.environ.get(MPS_ENV, "100")) / 100, dev)
    with contextlib.ExitStack() as scope:
        if green is not None:
            scope.enter_context(torch.cuda.stream(green[1]))
        scope.enter_context(torch.inference_mode())
        for i, batch in enumerate(batches):
            gen = torch.Generator().manual_seed(seed)
            x = torch.randn((batch, *input_shape(name)), generator=gen).to(dev)
            for b in range(len(chain.blocks)):
                # each block as the serving workers run a range: a CUDA graph of the batch
                runner = SegmentRunner(chain, b, b + 1, batch, tuple(x.shape[1:]), dev,
                                       graphs=use_graph, sizes=[batch])
                fn, y = runner.kernel(x)
                lat[b][i] = _time_cuda(fn, warmup, repeats)
                x = y.clone()
    props = torch.cuda.get_device_properties(dev)
    return {
        "latency_ms": lat,
        "block_names": list(chain.block_names),
        "gpu_name": props.name,
        "memory_bytes": int(props.total_memory),
        "mps_percentage": os.environ.get(MPS_ENV),
        "green_context": green is not None,
    }


def _profile_cuda(
    name: str,
    batches: Sequence[int],
    shares: Sequence[float],
    warmup: int,
    repeats: int,
    seed: int,
    progress: Progress | None,
) -> tuple[list[list[list[float]]], dict[str, Any]]:
    lat: list[list[list[float]]] | None = None
    info: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="graft-profile-") as tmp:
        for j, share in enumerate(shares):
            out = Path(tmp) / f"share{j}.json"
            cmd = [
                sys.executable, "-m", "graft.cost.profiler", "--worker", name,
                "--batches", ",".join(str(b) for b in batches),
                "--warmup", str(warmup), "--repeats", str(repeats), "--seed", str(seed),
                "--out", str(out),
            ]  # fmt: skip
            env = dict(os.environ, **{MPS_ENV: str(max(1, round(100 * share)))})
            log.info("profiling %s at share %g: %s", name, share, " ".join(cmd))
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:  # e.g. CUDA out of memory at the largest batch
                last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
                raise GraftInputError(f"the profiler's worker failed at share {share:g}: "
                                      f"{last}")
            res = json.loads(out.read_text())
            blocks = res["latency_ms"]
            if lat is None:
                lat = [[[0.0] * len(shares) for _ in batches] for _ in blocks]
            for b, row in enumerate(blocks):
                for i, v in enumerate(row):
                    lat[b][i][j] = v
            info = {
                "name": res["gpu_name"],
                "memory_bytes": res["memory_bytes"],
                "block_names": res["block_names"],
                "green_context": [*info.get("green_context", []),
                                  bool(res.get("green_context"))],
            }
            if progress is not None:
                progress(f"{name} share={share:g} ({j + 1}/{len(shares)})")
    assert lat is not None
    return lat, info


# ----------------------------------------------------------------------------- API


def profile_model(
    name: str,
    *,
    device: str = "cpu",
    batches: Sequence[int] = (1, 2, 4, 8),
    shares: Sequence[float] | None = None,
    warmup: int = 3,
    repeats: int = 10,
    seed: int = 0,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Measure model ``name`` block by block; return a profile (the JSON ``profile:`` reads)."""
    batches = [int(b) for b in batches]
    shares = giveable_shares(device, shares)
    _check_args(batches, shares, warmup, repeats)
    if device == "cpu":
        lat, names = _profile_cpu(name, batches, shares, warmup, repeats, seed, progress)
        dev_info: dict[str, Any] = {
            "kind": "cpu",
            "name": cpu_name(),
            "cores": cpu_cores(),
            "share_unit": "fraction of the cores used as intra-op threads",
        }
        limits = {
            "memory_bytes": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"),
            "context_bytes": CPU_PROCESS_BYTES,
            "max_processes": cpu_cores(),
        }
    else:
        mps = mps_daemon_running()
        if not mps and shares != [1.0]:
            log.warning("no MPS control daemon found: shares are measured on green contexts "
                        "where available, else every share measures the whole GPU")
        lat, info = _profile_cuda(name, batches, shares, warmup, repeats, seed, progress)
        names = info["block_names"]
        dev_info = {
            "kind": "cuda",
            "name": info["name"],
            "share_unit": "MPS active thread percentage / 100",
            "mps_daemon": mps,
            # per share: measured on a green context of that part of the SMs (no MPS daemon)
            "green_context": info["green_context"],
        }
        limits = {
            "memory_bytes": info["memory_bytes"],
            "context_bytes": GPU_CONTEXT_BYTES,
            "max_processes": MPS_MAX_CLIENTS,
        }
    blocks = [{"name": n, "latency_ms": rows} for n, rows in zip(names, lat, strict=True)]
    return {
        "format": PROFILE_FORMAT,
        "version": PROFILE_VERSION,
        "device": dev_info,
        "limits": limits,
        "batches": batches,
        "shares": shares,
        "settings": {
            "warmup": warmup,
            "repeats": repeats,
            "seed": seed,
            "statistic": "median",
            "torch": torch.__version__,
            "python": platform.python_version(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
        "models": {name: {"blocks": blocks}},
    }


def merge_profiles(profiles: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One profile holding the models of several, measured on the same grids and device."""
    if not profiles:
        raise GraftInputError("nothing to merge")
    first = profiles[0]
    merged = {**first, "models": dict(first["models"])}
    for p in profiles[1:]:
        for key in ("batches", "shares", "device"):
            if p[key] != first[key]:
                raise GraftInputError(f"cannot merge profiles with different {key}")
        merged["models"].update(p["models"])
    return merged


def write_profile(result: dict[str, Any], path: str | Path) -> None:
    """Validate ``result`` and write it as JSON."""
    validate_profile(result, str(path))
    Path(path).write_text(json.dumps(result, indent=1) + "\n")


def _main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m graft.cost.profiler")
    ap.add_argument("--worker", metavar="MODEL", help="internal: one CUDA share, one model")
    ap.add_argument("--batches", default="1,2,4,8")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-graph", action="store_true", help="time eagerly, no CUDA graphs")
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.worker is None:
        ap.error("the profiler's command line is `graft profile`; --worker is internal")
    batches = [int(b) for b in args.batches.split(",")]
    res = worker(args.worker, batches, args.warmup, args.repeats, args.seed, not args.no_graph)
    Path(args.out).write_text(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
