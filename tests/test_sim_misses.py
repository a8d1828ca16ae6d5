"""The simulator answers the operator: GPUs at peak and on average, and why requests missed,
per client group, with the lifecycle's outcomes and one set of miss reasons."""

from __future__ import annotations

import json

import numpy as np

from graft.cli import main
from graft.serving.metrics import MISS_REASONS, Outcomes, miss_masks, tally
from graft.sim.run import run_scenario
from graft.sim.scenario import parse_scenario


def test_every_miss_has_exactly_one_reason():
    # requests: on time, late, dropped, rejected, rejected with a client budget too small,
    # and a late one whose budget was too small anyway (the client's reason comes first)
    completed = np.array([1, 1, 0, 0, 0, 1], bool)
    dropped = np.array([0, 0, 1, 0, 0, 0], bool)
    rejected = np.array([0, 0, 0, 1, 1, 0], bool)
    on_time = np.array([1, 0, 0, 0, 0, 0], bool)
    done = np.where(completed, 5.0, np.nan)
    o = Outcomes(completed, dropped, rejected, on_time, done)
    client = np.array([0, 0, 0, 0, 1, 1], bool)
    masks = miss_masks(o, client)
    assert list(masks) == list(MISS_REASONS)
    stacked = np.stack(list(masks.values()))
    assert (stacked.sum(axis=0) == ~on_time).all()  # one reason per miss, none for a hit
    s = tally(o, done, ["m"] * 6, client_budget=client, groups=["a", "a", "a", "b", "b", "b"])
    assert s["misses"] == {"client_budget": 2, "admission": 1, "late": 1, "dropped": 1}
    assert s["per_group"]["a"] == {"requests": 3, "on_time": 1, "slo_attainment": 1 / 3,
                                   "client_budget": 0, "admission": 0, "late": 1, "dropped": 1}
    assert s["per_group"]["b"]["client_budget"] == 2 and s["per_group"]["b"]["admission"] == 1
    assert "misses" not in tally(o, done, ["m"] * 6)  # only when asked


def _scenario():
    # g0 can make its SLO; g1's SLO is below what its device and link leave for any server
    ok = {"count": 3, "model": "tiny", "device": "jetson", "slo_ms": 150, "rate": 10,
          "trace": "synthetic:wifi"}
    hopeless = {"count": 2, "model": "mobilenet_v2", "device": "rpi", "slo_ms": 30,
                "rate": 4, "trace": "synthetic:lte"}
    return parse_scenario({"name": "mixed", "duration_s": 9, "seed": 2,
                           "replan": {"period_s": 3, "startup_s": 0.5},
                           "clients": [ok, hopeless]})


def test_runs_report_peak_gpus_and_misses_per_client_group():
    runs = run_scenario(_scenario(), ["graft", "gslice"])
    for r in runs.values():
        assert sum(r.misses.values()) == r.requests - r.on_time
        assert r.peak_gpus == max(g for _, _, g in r.share_timeline)
        # mean_gpus divides by duration_s; the last plan holds GPUs a moment past it
        assert r.peak_gpus >= 1 and r.mean_gpus > 0
        assert r.peak_share == max(s for _, s, _ in r.share_timeline)
        assert set(r.per_group) == {"g0", "g1"}
        assert "tiny on jetson" in r.per_group["g0"]["label"]
        for key in ("requests", "on_time", *MISS_REASONS):
            assert sum(g[key] for g in r.per_group.values()) == (
                r.requests if key == "requests" else r.on_time if key == "on_time"
                else r.misses[key])
        g1 = r.per_group["g1"]
        assert g1["on_time"] == 0 and g1["client_budget"] == g1["requests"] > 0
        assert r.per_group["g0"]["slo_attainment"] > 0.5
        # the client-side misses are exactly the requests above the attainment ceiling
        assert r.misses["client_budget"] == round(r.requests * (1 - r.attainment_ceiling))
        assert r.device_word == "GPU"


def test_cli_simulate_prints_the_answer(tmp_path, capsys):
    path = tmp_path / "s.json"
    sc = {"name": "cli", "duration_s": 6, "replan": {"period_s": 3},
          "clients": [{"count": 2, "model": "tiny", "device": "jetson", "slo_ms": 150,
                       "rate": 10, "trace": "synthetic:wifi"}]}
    path.write_text(json.dumps(sc))
    assert main(["simulate", str(path), "--planner", "graft", "-o", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("graft: 1 GPU at peak (") and "% of " in out
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())["planners"]["graft"]
    assert summary["peak_gpus"] == 1 and set(summary["misses"]) == set(MISS_REASONS)
    assert set(summary["per_group"]) == {"g0"}


def test_the_servers_summary_counts_misses_with_the_same_reasons():
    from graft.cost.registry import make_cost_model
    from graft.serving.lifecycle import Request, RequestState
    from graft.serving.metrics import summarize

    def req(i, budget, state, done=None):
        return Request(i, "f", "tiny", 0, 0.0, budget, completion_ms=done, state=state)

    reqs = [req(0, 50.0, RequestState.COMPLETED, 1.0),     # on time
            req(1, 50.0, RequestState.COMPLETED, 60.0),    # late
            req(2, 1e-6, RequestState.REJECTED),           # no server could: client budget
            req(3, 50.0, RequestState.REJECTED),           # admission
            req(4, 50.0, RequestState.DROPPED)]
    s = summarize(reqs, make_cost_model("analytic:v100"))
    assert s["misses"] == {"client_budget": 1, "admission": 1, "late": 1, "dropped": 1}
    assert "misses" not in summarize(reqs)
