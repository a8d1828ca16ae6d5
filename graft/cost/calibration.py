"""Calibration of the analytic model against published GPU measurements.

The data are third-party (``../shared/data/calibration`` beside the checkout, never copied into
the repo; each folder's ``SOURCE.md`` names its origin and license):

* ``igniter-v100-mps/mps_solo_trtexec_summary.csv``: ResNet-50 on a V100, TensorRT FP32, GPU
  execution time (``compute_ms_mean``) per batch x MPS active-thread percentage. Rows with an
  empty percentage or a ``quality_flag`` are skipped.
* ``nvidia-dle/framework_inference.csv``: NVIDIA DeepLearningExamples whole-GPU ResNet-50 v1.5
  (the torchvision ResNet-50) batch curves, FP32 on V100 and T4, TF32 on A100, rows of the
  current READMEs only.

:func:`report` renders the model next to the data (``graft calibrate``; committed as
``docs/calibration.md``). :func:`fit` is the offline least-squares fit whose result is
hard-coded in :mod:`graft.cost.analytic`; it needs scipy, which the package does not.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from graft.cost.analytic import (
    EFFICIENCY,
    SHAPE,
    AnalyticParams,
    BlockArrays,
    block_times_ms,
    params_for,
)
from graft.cost.devices import GPUS
from graft.errors import GraftInputError
from graft.models.catalog import get_model

log = logging.getLogger(__name__)

MODEL = "resnet50"
IGNITER_FILE = Path("igniter-v100-mps") / "mps_solo_trtexec_summary.csv"
DLE_FILE = Path("nvidia-dle") / "framework_inference.csv"
#: DLE rows below this batch are dominated by framework overhead (Python, launches) that a
#: CUDA-graph stage does not pay; they are shown but kept out of the fit and the summary.
DLE_KERNEL_BOUND_BATCH = 16


@dataclass(frozen=True)
class Curve:
    """Measured latencies of ResNet-50 on one GPU preset: (batch, share, ms) points."""

    key: str
    title: str
    gpu: str
    source: str
    #: How the fit uses it: "fit", "fit (batch >= 16)", "eta (batch 256)" (eta read off the
    #: largest batch, see :func:`tensor_core_efficiency`) or "check" (shown, not fitted).
    role: str
    batches: tuple[int, ...]
    shares: tuple[float, ...]
    measured_ms: tuple[float, ...]

    def predict(self, prm: AnalyticParams, blocks: BlockArrays) -> np.ndarray:
        return predict_ms(self.gpu, prm, blocks, self.batches, self.shares)

    def fitted_mask(self) -> np.ndarray:
        b = np.array(self.batches)
        if self.role == "fit":
            return np.ones(len(b), dtype=bool)
        if self.role.startswith("fit (batch"):
            return b >= DLE_KERNEL_BOUND_BATCH
        return np.zeros(len(b), dtype=bool)


def predict_ms(
    gpu: str,
    prm: AnalyticParams,
    blocks: BlockArrays,
    batches: Sequence[int],
    shares: Sequence[float],
) -> np.ndarray:
    """Whole-model latency (ms) at each (batch, share) pair."""
    ub = np.unique(np.asarray(batches))
    us = np.unique(np.asarray(shares, dtype=float))
    grid = block_times_ms(blocks, ub, us, GPUS[gpu], prm).sum(0) + prm.batch_overhead_ms
    return grid[np.searchsorted(ub, batches), np.searchsorted(us, shares)]


# ----------------------------------------------------------------------------- data


def find_data_dir(data_dir: str | None = None) -> Path | None:
    """The calibration data folder: ``data_dir`` if given, else ``../shared/data/calibration``
    beside the repository root or the working directory; None when absent."""
    if data_dir is not None:
        path = Path(data_dir)
        if not path.is_dir():
            raise GraftInputError(f"calibration data folder not found: {data_dir}")
        return path
    repo_root = Path(__file__).resolve().parents[2]
    for base in (repo_root, Path.cwd()):
        path = (base / ".." / "shared" / "data" / "calibration").resolve()
        if path.is_dir():
            return path
    return None


#: Where the data come from, for the message when they are missing.
DATA_HINT = ("the third-party measurements live in ../shared/data/calibration beside the "
             "repository (a copy of igniter-v100-mps/ and nvidia-dle/, each with its "
             "SOURCE.md); pass --data-dir DIR (make calibrate DATA=DIR) to point at one; "
             "the README's Data section says where they come from")


def require_data_dir(data_dir: str | None = None) -> Path:
    """``find_data_dir``, or a GraftInputError saying what is needed and where it goes."""
    data = find_data_dir(data_dir)
    if data is None:
        raise GraftInputError(f"calibration data not found: {DATA_HINT}")
    return data


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise GraftInputError(f"cannot read calibration data {path}: {exc}") from None


def load_igniter(data: Path) -> Curve:
    rows = [
        r
        for r in _read_csv(data / IGNITER_FILE)
        if r["model"] == MODEL and r["mps_active_thread_pct"] and not r["quality_flag"]
    ]
    rows.sort(key=lambda r: (int(r["batch"]), int(r["mps_active_thread_pct"])))
    return Curve(
        key="igniter",
        title="ResNet-50, V100, TensorRT FP32, batch x MPS active-thread %",
        gpu="v100",
        source=f"{IGNITER_FILE} (iGniter, TPDS 2023): compute_ms_mean",
        role="fit",
        batches=tuple(int(r["batch"]) for r in rows),
        shares=tuple(int(r["mps_active_thread_pct"]) / 100 for r in rows),
        measured_ms=tuple(float(r["compute_ms_mean"]) for r in rows),
    )


#: (key, gpu column, precision, framework, runtime, preset, role, note)
# fmt: off
DLE_CURVES: tuple[tuple[str, str, str, str, str, str, str, str], ...] = (
    ("v100-tf1", "V100-16GB", "FP32", "TensorFlow1", "framework-native", "v100", "check",
     "TF1 native, FP32"),
    ("v100-pyt", "V100-16GB", "FP32", "PyTorch", "framework-native", "v100", "check",
     "PyTorch eager, FP32"),
    ("t4-pyt", "T4", "FP32", "PyTorch", "framework-native", "t4", "fit (batch >= 16)",
     "PyTorch eager, FP32"),
    ("t4-tf1", "T4-16GB", "FP32", "TensorFlow1", "framework-native", "t4", "check",
     "TF1 native, FP32"),
    ("a100-trt", "A100-80GB", "TF32", "PaddlePaddle", "Paddle-TRT", "a100", "eta (batch 256)",
     "Paddle-TRT (TensorRT), TF32"),
    ("a100-tf1", "A100-40GB", "TF32", "TensorFlow1", "framework-native", "a100", "check",
     "TF1 native, TF32 (A100 40GB)"),
)
# fmt: on


def load_dle(data: Path) -> list[Curve]:
    rows = _read_csv(data / DLE_FILE)
    curves = []
    for key, gpu_col, prec, fw, runtime, preset, role, note in DLE_CURVES:
        sel = [
            r
            for r in rows
            if r["model"] == "resnet50v1.5"
            and r["gpu"] == gpu_col
            and r["precision"] == prec
            and r["framework"] == fw
            and r["runtime"] == runtime
            and r["in_current_readme"] in ("yes", "")
        ]
        sel.sort(key=lambda r: int(r["batch"]))
        if not sel:
            log.warning("no DLE rows for %s", key)
            continue
        curves.append(
            Curve(
                key=key,
                title=f"ResNet-50 v1.5, {gpu_col}, {note}",
                gpu=preset,
                source=f"{DLE_FILE}: {sel[0]['source_path']} @ {sel[0]['readme_commit'][:8]}"
                ", latency_avg_ms",
                role=role,
                batches=tuple(int(r["batch"]) for r in sel),
                shares=tuple(1.0 for _ in sel),
                measured_ms=tuple(float(r["latency_avg_ms"]) for r in sel),
            )
        )
    return curves


def load_curves(data: Path) -> list[Curve]:
    """Every curve of the data folder; a file with missing columns or values that are not
    numbers is a GraftInputError naming it."""
    try:
        igniter = load_igniter(data)
    except GraftInputError:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise GraftInputError(f"calibration data {data / IGNITER_FILE} is malformed: "
                              f"{exc!r}") from None
    if not igniter.batches:
        raise GraftInputError(f"calibration data {data / IGNITER_FILE} has no usable "
                              f"{MODEL} rows")
    try:
        return [igniter, *load_dle(data)]
    except GraftInputError:
        raise
    except (KeyError, ValueError, TypeError) as exc:
        raise GraftInputError(f"calibration data {data / DLE_FILE} is malformed: "
                              f"{exc!r}") from None


# ----------------------------------------------------------------------------- fit

#: Shape constants the fit varies (with eta of the V100) on the iGniter grid, the one data set
#: that varies the share. mem_efficiency and batch_overhead_ms stay as in SHAPE (assumptions).
FIT_FIELDS = ("fill_flops_per_sm", "share_smoothness", "bandwidth_knee", "kernel_ms")


def _fit_log(
    curve: Curve, blocks: BlockArrays, base: AnalyticParams, names: Sequence[str]
) -> tuple[dict[str, float], float, float]:
    """Least squares on log(model / measured) over ``curve``'s fitted points, varying ``names``
    (log-space). Returns the values and the median and max absolute relative error."""
    from scipy.optimize import least_squares  # offline only

    mask = curve.fitted_mask()
    meas = np.array(curve.measured_ms)[mask]

    def residuals(x: np.ndarray) -> np.ndarray:
        prm = replace(base, **dict(zip(names, np.exp(x), strict=True)))
        return np.log(curve.predict(prm, blocks)[mask] / meas)

    res = least_squares(residuals, np.log([getattr(base, n) for n in names]))
    err = np.abs(np.expm1(residuals(res.x)))
    vals = {n: float(v) for n, v in zip(names, np.exp(res.x), strict=True)}
    return vals, float(np.median(err)), float(err.max())


def tensor_core_efficiency(curve: Curve, blocks: BlockArrays) -> float:
    """Sustained fraction of the dense TF32 peak at the curve's largest batch, taking the
    measurement as pure compute: ``B * FLOPs / (ms * peak)``. A lower bound (the engine is
    partly memory-bound), read straight off the data rather than through the model."""
    i = int(np.argmax(curve.batches))
    flops = curve.batches[i] * float(blocks.flops.sum())
    return flops / (curve.measured_ms[i] / 1e3 * GPUS[curve.gpu].peak_flops)


def fit(data_dir: str | None = None) -> dict[str, float]:
    """The offline calibration (needs scipy); returns the constants for analytic.py.

    1. eta (V100) and the shape constants FIT_FIELDS: least squares on log latency over the
       iGniter ResNet-50 V100 batch x MPS grid.
    2. eta (T4): the same, shape fixed, on the DLE T4 FP32 curve at batch >= 16.
    3. eta (tensor-core presets): :func:`tensor_core_efficiency` of the A100 Paddle-TRT TF32
       curve. The model's unfused activation traffic makes ResNet-50 memory-bound on an A100
       at large batch, so the A100 curve cannot pin eta through the model.
    """
    data = require_data_dir(data_dir)
    blocks = BlockArrays.of(get_model(MODEL))
    curves = {c.key: c for c in load_curves(data)}
    base = replace(SHAPE, eta=EFFICIENCY["v100"])
    shape, med, mx = _fit_log(curves["igniter"], blocks, base, ("eta", *FIT_FIELDS))
    log.info("V100 MPS grid: %s; median |rel err| %.3f, max %.3f", shape, med, mx)
    out = {"eta_v100": shape.pop("eta"), **shape}
    for key in ("t4-pyt", "a100-trt"):
        if key not in curves:
            raise GraftInputError(f"calibration data {data / DLE_FILE} has no rows for the "
                                  f"{key} curve the fit needs")
    t4, med, mx = _fit_log(curves["t4-pyt"], blocks, replace(SHAPE, **shape), ("eta",))
    log.info(
        "T4 batch >= %d: %s; median |rel err| %.3f, max %.3f", DLE_KERNEL_BOUND_BATCH, t4, med, mx
    )
    out["eta_t4"] = t4["eta"]
    out["eta_tensor_cores"] = tensor_core_efficiency(curves["a100-trt"], blocks)
    return out


# ----------------------------------------------------------------------------- report


def _rel(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    return (pred - meas) / meas


def _stats(err: np.ndarray) -> str:
    if err.size == 0:
        return "n/a | n/a"
    a = np.abs(err)
    return f"{100 * np.median(a):.1f} % | {100 * a.max():.1f} %"


def _igniter_table(c: Curve, pred: np.ndarray) -> list[str]:
    pcts = sorted({round(s * 100) for s in c.shares})
    cell: dict[tuple[int, int], str] = {}
    for b, s, m, p in zip(c.batches, c.shares, c.measured_ms, pred, strict=True):
        cell[(b, round(s * 100))] = f"{m:.2f} / {p:.2f} ({100 * (p - m) / m:+.0f}%)"
    lines = [
        "| batch | " + " | ".join(f"{p} %" for p in pcts) + " |",
        "|---:|" + "---:|" * len(pcts),
    ]
    for b in sorted(set(c.batches)):
        lines.append(f"| {b} | " + " | ".join(cell.get((b, p), "") for p in pcts) + " |")
    return lines


def _curve_table(c: Curve, pred: np.ndarray) -> list[str]:
    lines = ["| batch | measured ms | model ms | rel. error |", "|---:|---:|---:|---:|"]
    for b, m, p in zip(c.batches, c.measured_ms, pred, strict=True):
        lines.append(f"| {b} | {m:.2f} | {p:.2f} | {100 * (p - m) / m:+.1f} % |")
    return lines


def report(data_dir: str | None = None) -> str:
    """A markdown report: the analytic model next to the published measurements."""
    data = find_data_dir(data_dir)
    head = ["# Analytic cost model vs published measurements", ""]
    if data is None:
        return "\n".join(
            head
            + [
                "The calibration data were not found (looked for `../shared/data/calibration` "
                "beside the repository and the working directory), so there is nothing to "
                "compare against. Pass `--data-dir DIR` to point at a copy.",
                "",
            ]
        )
    blocks = BlockArrays.of(get_model(MODEL))
    curves = load_curves(data)
    preds = {c.key: c.predict(params_for(c.gpu), blocks) for c in curves}
    lines = head + [
        f"Model: `{MODEL}` from the block table, the `analytic:<gpu>` presets with the constants "
        "hard-coded in `graft/cost/analytic.py`. Cells read *measured / model (relative "
        "error)*, in ms. Relative error = (model - measured) / measured.",
        "",
        f"Data: `{data_dir or '../shared/data/calibration'}` (third-party; see each folder's "
        "SOURCE.md and docs/cost_model.md). Regenerate with `graft calibrate`.",
        "",
        "## Summary",
        "",
        "| data | preset | role | points | median abs. error | max abs. error "
        f"| median, batch >= {DLE_KERNEL_BOUND_BATCH} | max, batch >= {DLE_KERNEL_BOUND_BATCH} |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for c in curves:
        err = _rel(preds[c.key], np.array(c.measured_ms))
        big = np.array(c.batches) >= DLE_KERNEL_BOUND_BATCH
        lines.append(
            f"| {c.title} | {c.gpu} | {c.role} | {len(err)} | {_stats(err)} | {_stats(err[big])} |"
        )
    lines += [
        "",
        "Roles: *fit*: every point is in the least-squares fit; *fit (batch >= 16)*: only those "
        "rows (smaller batches measure framework overhead); *eta (batch 256)*: the TF32 "
        "efficiency of the tensor-core presets is this curve's batch-256 throughput as a "
        "fraction of the dense TF32 peak, read off the data; *check*: shown, not fitted.",
        "",
        "The model describes GPU execution inside a CUDA graph. TensorRT (iGniter, Paddle-TRT) "
        "is the closest published analogue, though it fuses convolution, batch norm and ReLU "
        "(fewer kernels and less traffic than the unfused PyTorch blocks the model counts). "
        "The DLE framework rows include Python, launch and framework overhead that a "
        "CUDA-graph stage does not pay: at small batch the model should be *below* them.",
        "",
    ]
    for c in curves:
        lines += [f"## {c.title}", "", f"Source: `{c.source}`; role: {c.role}.", ""]
        lines += (
            _igniter_table(c, preds[c.key]) if c.key == "igniter" else _curve_table(c, preds[c.key])
        )
        lines.append("")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import sys

    ap = argparse.ArgumentParser(prog="python -m graft.cost.calibration")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--fit", action="store_true", help="run the offline fit (needs scipy)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.fit:
            try:
                import scipy  # noqa: F401
            except ImportError:
                raise GraftInputError("--fit needs scipy: pip install scipy (or the dev "
                                      "extra, pip install -e '.[dev]')") from None
            for k, v in fit(args.data_dir).items():
                sys.stdout.write(f"{k} = {v:.6g}\n")
        else:
            require_data_dir(args.data_dir)
            sys.stdout.write(report(args.data_dir) + "\n")
    except GraftInputError as e:
        sys.stderr.write(f"{ap.prog}: error: {e}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
