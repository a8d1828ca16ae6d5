"""The simulator's output files: summary.json's schema and values, valid PNGs, report.md."""

from __future__ import annotations

import json

import pytest

from graft.sim.report import write_report
from graft.sim.run import PlannerRun

PNGS = ("share_over_time.png", "latency_cdf.png", "attainment_by_model.png")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(planner: str, latencies: list[float], **kw) -> PlannerRun:
    fields = dict(
        planner=planner, requests=10, completed=len(latencies), rejected=1,
        dropped=10 - 1 - len(latencies), on_time=min(7, len(latencies)),
        slo_attainment=min(7, len(latencies)) / 10,
        p50_ms=None, p99_ms=None, share_seconds=12.5, mean_gpus=1.5,
        share_timeline=[(0.0, 1.25, 2), (4.0, 2.5, 3), (8.0, 0.75, 1)],
        latencies_ms=latencies, attainment_by_model={"resnet50": 0.8, "vgg16": 0.6},
        plans=2, sim_requests_per_s=25000.0, attainment_ceiling=0.9, share_seconds_floor=4.0,
        peak_gpus=3, peak_share=2.5,
        misses={"client_budget": 1, "admission": 1, "late": 1, "dropped": 0},
        per_group={"g0": {"label": "10 clients, resnet50 on phone-npu, SLO 200 ms, synthetic",
                          "requests": 10, "on_time": 7, "slo_attainment": 0.7,
                          "client_budget": 1, "admission": 1, "late": 1, "dropped": 0}},
    )
    fields.update(kw)
    return PlannerRun(**fields)


@pytest.fixture(scope="module")
def runs() -> dict[str, PlannerRun]:
    lat = [20.0, 25.0, 30.0, 35.0, 40.0, 45.0, 50.0, 90.0]
    return {
        "graft": _run("graft", lat, p50_ms=37.5, p99_ms=88.6, share_seconds=10.0),
        "gslice": _run("gslice", lat[:5], p50_ms=30.0, p99_ms=39.6, share_seconds=25.0,
                       mean_gpus=3.0, attainment_by_model={"resnet50": 0.5, "bert": 1.0}),
    }


@pytest.fixture(scope="module")
def written(tmp_path_factory, runs):
    """One report of two planners, shared by the tests that read it (plotting is slow-ish)."""
    out = tmp_path_factory.mktemp("report") / "out"  # created by write_report
    return out, write_report(str(out), "burst", runs, slo_ms=60.0)


def _check_pngs(outdir) -> None:
    for name in PNGS:
        data = (outdir / name).read_bytes()
        assert data[:8] == PNG_MAGIC, name
        assert len(data) > 10_000, name


def test_summary_schema_and_values(written):
    out, paths = written
    assert sorted(paths) == sorted(str(out / n) for n in (
        "summary.json", "report.md", *PNGS))
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == ["planners"]
    assert list(summary["planners"]) == ["graft", "gslice"]
    assert summary["planners"]["graft"] == {
        "requests": 10, "completed": 8, "rejected": 1, "slo_attainment": 0.7,
        "attainment_ceiling": 0.9, "p50_ms": 37.5, "p99_ms": 88.6, "share_seconds": 10.0,
        "share_seconds_floor": 4.0, "mean_gpus": 1.5, "peak_gpus": 3, "peak_share": 2.5,
        "misses": {"client_budget": 1, "admission": 1, "late": 1, "dropped": 0},
        "per_group": {"g0": {
            "label": "10 clients, resnet50 on phone-npu, SLO 200 ms, synthetic",
            "requests": 10, "on_time": 7, "slo_attainment": 0.7, "client_budget": 1,
            "admission": 1, "late": 1, "dropped": 0}},
    }
    g = summary["planners"]["gslice"]
    assert (g["completed"], g["p99_ms"], g["share_seconds"], g["mean_gpus"]) == (5, 39.6, 25.0, 3.0)
    for entry in summary["planners"].values():
        for key in ("requests", "completed", "rejected"):
            assert type(entry[key]) is int
        for key in ("slo_attainment", "attainment_ceiling", "share_seconds",
                    "share_seconds_floor", "mean_gpus", "p50_ms", "p99_ms"):
            assert type(entry[key]) is float
    _check_pngs(out)


def test_markdown_names_planners_and_embeds_plots(written, runs):
    out, _ = written
    md = (out / "report.md").read_text()
    assert "burst" in md
    for name in runs:
        assert name in md
    for png in PNGS:
        assert f"]({png})" in md
    for label in ("requests", "completed", "rejected", "dropped", "SLO attainment", "p50",
                  "p99", "share-seconds", "mean GPUs", "peak GPUs", "plan switches",
                  "simulated req/s", "Why requests missed"):
        assert label in md
    # the answer first: GPUs at peak, and why requests missed
    first = md.split("\n| |")[0]
    assert "- graft: 3 GPUs at peak (1.50 on average" in first
    assert "3 misses: 1 client budget too small, 1 admission, 1 late (queueing)" in first
    group_row = next(line for line in md.splitlines() if line.startswith("| g0 |"))
    assert "resnet50 on phone-npu" in group_row and "| 70.0% | 1 | 1 | 1 | 0 |" in group_row
    ratio_row = next(line for line in md.splitlines() if line.startswith("| share-seconds /"))
    assert "0.40x" in ratio_row and "1.00x" in ratio_row
    ceiling_row = next(line for line in md.splitlines()
                       if line.startswith("| attainment ceiling"))
    assert ceiling_row.count("90.00%") == 2
    floor_row = next(line for line in md.splitlines() if line.startswith("| share-seconds floor"))
    assert floor_row.count("4.00") == 2


@pytest.mark.parametrize("missing", [None, float("nan")])
def test_nothing_completed_gives_null_percentiles_and_still_plots(tmp_path, missing):
    runs = {"nexus": _run("nexus", [], p50_ms=missing, p99_ms=missing,
                          attainment_by_model={"resnet50": 0.0}, share_timeline=[])}
    write_report(str(tmp_path), "outage", runs, slo_ms=50.0)
    entry = json.loads((tmp_path / "summary.json").read_text())["planners"]["nexus"]
    assert entry["completed"] == 0
    assert entry["p50_ms"] is None and entry["p99_ms"] is None
    _check_pngs(tmp_path)
    md = (tmp_path / "report.md").read_text()
    assert "nexus" in md and "share-seconds / gslice" not in md and "nan" not in md


def test_units_and_plurals_follow_the_cost_model(tmp_path):
    """A CPU profile's plans hold devices, not GPUs; one of them is "1 device"."""
    runs = {"graft": _run("graft", [20.0], peak_gpus=1, device_word="device", misses={})}
    write_report(str(tmp_path), "cpu", runs)
    md = (tmp_path / "report.md").read_text()
    assert "graft: 1 device at peak" in md and "| peak devices |" in md
    assert "GPUs" not in md.split("## ")[0]
