"""The calibration report and fit, on small synthetic data folders (never ../shared)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from graft.cost import calibration as cal
from graft.cost.analytic import SHAPE, BlockArrays, params_for
from graft.errors import GraftInputError
from graft.models.catalog import get_model

IGNITER_COLS = ["model", "batch", "mps_active_thread_pct", "compute_ms_mean", "quality_flag"]
DLE_COLS = [
    "gpu", "precision", "framework", "runtime", "model", "batch", "latency_avg_ms",
    "in_current_readme", "source_path", "readme_commit",
]  # fmt: skip


def _write(path: Path, cols: list[str], rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        w.writerows(rows)


def make_data(root: Path, scale: float = 1.0) -> Path:
    """A data folder whose numbers are the fitted model's own, times ``scale``."""
    blocks = BlockArrays.of(get_model("resnet50"))
    rows = []
    for b in (1, 2, 4, 8, 16, 32):
        for pct in (10, 20, 50, 100):
            ms = cal.predict_ms("v100", params_for("v100"), blocks, [b], [pct / 100])[0]
            rows.append(
                {"model": "resnet50", "batch": b, "mps_active_thread_pct": pct,
                 "compute_ms_mean": ms * scale, "quality_flag": ""}
            )  # fmt: skip
    rows.append(  # a flagged row and a row without a percentage: both skipped
        {"model": "resnet50", "batch": 64, "mps_active_thread_pct": 10, "compute_ms_mean": 1.0,
         "quality_flag": "SUSPECT"}
    )  # fmt: skip
    rows.append(
        {"model": "resnet50", "batch": 1, "mps_active_thread_pct": "", "compute_ms_mean": 1.0,
         "quality_flag": ""}
    )  # fmt: skip
    _write(root / cal.IGNITER_FILE, IGNITER_COLS, rows)
    dle = []
    for key, gpu_col, prec, fw, runtime, preset, _role, _note in cal.DLE_CURVES:
        for b in (1, 16, 64, 256):
            ms = cal.predict_ms(preset, params_for(preset), blocks, [b], [1.0])[0]
            dle.append(
                {"gpu": gpu_col, "precision": prec, "framework": fw, "runtime": runtime,
                 "model": "resnet50v1.5", "batch": b, "latency_avg_ms": ms * scale,
                 "in_current_readme": "yes", "source_path": f"{key}/README.md",
                 "readme_commit": "0123456789abcdef"}
            )  # fmt: skip
    _write(root / cal.DLE_FILE, DLE_COLS, dle)
    return root


def test_report_side_by_side(tmp_path: Path) -> None:
    text = cal.report(str(make_data(tmp_path, scale=1.1)))
    assert text.startswith("# Analytic cost model vs published measurements")
    assert "## Summary" in text and "| batch | 10 % | 20 % | 50 % | 100 % |" in text
    # the model is 1/1.1 of every measurement: -9 % everywhere, flagged rows left out
    assert "(-9%)" in text and "(+" not in text
    assert "| 64 |" not in text.split("## ResNet-50 v1.5")[0]
    for key, *_ in cal.DLE_CURVES:
        assert f"{key}/README.md" in text
    curves = cal.load_curves(tmp_path)
    assert len(curves[0].batches) == 24


def test_report_without_data(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cal, "find_data_dir", lambda data_dir=None: None)
    text = cal.report()
    assert "not found" in text and "nothing to compare" in text


def test_bad_data_dir(tmp_path: Path) -> None:
    with pytest.raises(GraftInputError, match="not found"):
        cal.report(str(tmp_path / "missing"))
    with pytest.raises(GraftInputError, match="mps_solo_trtexec_summary"):
        cal.report(str(tmp_path))


def test_fit_recovers_the_constants(tmp_path: Path) -> None:
    pytest.importorskip("scipy")
    vals = cal.fit(str(make_data(tmp_path)))
    assert vals["eta_v100"] == pytest.approx(SHAPE.eta, rel=0.02)
    for field in cal.FIT_FIELDS:
        assert vals[field] == pytest.approx(getattr(SHAPE, field), rel=0.05), field
    assert vals["eta_t4"] == pytest.approx(params_for("t4").eta, rel=0.02)
    assert np.isfinite(vals["eta_tensor_cores"])
