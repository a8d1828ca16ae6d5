"""Scenarios: validation names the field, the built-in loads, runs conserve requests, are
deterministic, and re-plan on a load step; ``graft simulate`` writes summary.json."""

import json
import logging
import math

import pytest

from graft.cli import main
from graft.errors import GraftInputError
from graft.sim.run import decision_windows, run_scenario
from graft.sim.scenario import load_scenario, parse_scenario, scenario_clients
from graft.workload.tracegen import markov_trace, write_rate_csv

log = logging.getLogger(__name__)


def group(**kw):
    base = {"count": 3, "model": "tiny", "device": "jetson", "slo_ms": 150, "rate": 10,
            "trace": "synthetic:wifi"}
    return {**base, **kw}


def scenario(**kw):
    base = {"name": "tiny", "duration_s": 12, "seed": 3, "jitter": 0.05,
            "replan": {"period_s": 3, "window_s": 3, "hysteresis": 0.05, "startup_s": 0.5},
            "clients": [group()]}
    return parse_scenario({**base, **kw})


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize("data, field", [
    ({"clients": [group()]}, "duration_s"),
    ({"duration_s": 10}, "clients"),
    ({"duration_s": 10, "clients": []}, "clients"),
    ({"duration_s": -1, "clients": [group()]}, "duration_s"),
    ({"duration_s": 10, "clients": [group(slo_ms=0)]}, "clients[0].slo_ms"),
    ({"duration_s": 10, "clients": [group(), group(rate="fast")]}, "clients[1].rate"),
    ({"duration_s": 10, "clients": [group(model="resnet5")]}, "clients[0].model"),
    ({"duration_s": 10, "clients": [group(device="toaster")]}, "clients[0].device"),
    ({"duration_s": 10, "clients": [group(count=0)]}, "clients[0].count"),
    ({"duration_s": 10, "clients": [group(colour="red")]}, "clients[0].colour"),
    ({"duration_s": 10, "clients": [group(policy="fixed")]}, "clients[0].partition"),
    # tiny has 6 blocks: the server runs at least the last one, so p = 6 is out of range
    ({"duration_s": 10, "clients": [group(policy="fixed", partition=6)]},
     "clients[0].partition"),
    ({"duration_s": 10, "clients": [group(trace="synthetic:5g")]}, "clients[0].trace"),
    ({"duration_s": 10, "clients": [group(start_s=11)]}, "clients[0].start_s"),
    ({"duration_s": 10, "clients": [group()], "cost_model": "analytic:k80"}, "cost_model"),
    ({"duration_s": 10, "clients": [group()], "max_utilization": 1.5}, "max_utilization"),
    ({"duration_s": 10, "clients": [group()], "replan": {"period_s": 2, "startup_s": 2}},
     "replan.startup_s"),
    ({"duration_s": 10, "clients": [group()], "replan": {"hysteresis": 2}},
     "replan.hysteresis"),
    ({"duration_s": 10, "clients": [group()], "speed": 1}, "speed"),
])
def test_validation_names_the_field(data, field):
    with pytest.raises(GraftInputError) as e:
        parse_scenario(data)
    assert e.value.field == field
    assert f"'{field}'" in str(e.value)


def test_missing_trace_file_names_the_field(tmp_path):
    sc = scenario(clients=[group(), group(trace="nowhere.csv")])
    with pytest.raises(GraftInputError, match=r"clients\[1\]\.trace"):
        scenario_clients(sc)


def test_traces_resolve_relative_to_the_file_or_trace_dir_and_cycle_a_directory(tmp_path):
    traces = tmp_path / "traces"
    traces.mkdir()
    for i in range(2):
        write_rate_csv(markov_trace(30, seed=i), traces / f"t{i}.csv")
    (traces / "README.md").write_text("not a trace\n")
    data = {"duration_s": 5, "clients": [group(count=3, trace="traces")]}
    path = tmp_path / "s.json"
    path.write_text(json.dumps(data))
    names = [c.spec.trace.name for c in scenario_clients(load_scenario(str(path)))]
    assert names == ["t0.csv", "t1.csv", "t0.csv"]
    data["clients"][0]["trace"] = "t1.csv"
    (tmp_path / "elsewhere").mkdir()
    other = tmp_path / "elsewhere" / "s.json"
    other.write_text(json.dumps(data))
    with pytest.raises(GraftInputError):
        scenario_clients(load_scenario(str(other)))
    sc = load_scenario(str(other), trace_dir=str(traces))
    assert {c.spec.trace.name for c in scenario_clients(sc)} == {"t1.csv"}


def test_paper_is_built_in():
    sc = load_scenario("paper")
    assert sc.name == "paper"
    assert 30 <= sc.num_clients <= 60
    assert len({g.model for g in sc.clients}) >= 3
    assert {g.device for g in sc.clients} >= {"jetson", "rpi"}
    assert all(100 <= g.slo_ms <= 400 for g in sc.clients)
    assert len(scenario_clients(sc)) == sc.num_clients


# ------------------------------------------------------------------ runs


def check_counts(r):
    assert r.requests == r.completed + r.dropped + r.rejected
    assert r.on_time <= r.completed
    assert len(r.latencies_ms) == r.completed
    assert math.isclose(r.slo_attainment, r.on_time / r.requests)
    assert r.slo_attainment <= r.attainment_ceiling <= 1.0
    assert r.share_timeline[-1][1:] == (0.0, 0)
    assert r.share_seconds > 0 and r.mean_gpus > 0
    if r.planner != "nexus":  # the floor bounds spatial plans
        assert 0 < r.share_seconds_floor <= r.share_seconds + 1e-9


def test_decision_windows_follow_the_replan_schedule():
    sc = scenario(duration_s=10, replan={"period_s": 3, "window_s": 2, "startup_s": 0.5})
    assert decision_windows(sc) == [(0.0, 0.0, 2000.0), (3000.0, 1000.0, 3000.0),
                                    (6000.0, 4000.0, 6000.0), (9000.0, 7000.0, 9000.0)]


def test_planners_see_the_same_requests_and_runs_are_deterministic():
    sc = scenario()
    runs = run_scenario(sc, ["graft", "gslice"])
    assert runs["graft"].requests == runs["gslice"].requests > 100
    for r in runs.values():
        check_counts(r)
        assert r.slo_attainment > 0.5
        assert set(r.attainment_by_model) == {"tiny"}
        assert r.p50_ms <= r.p99_ms
    again = run_scenario(sc, ["graft", "gslice"])
    assert again["graft"].latencies_ms == runs["graft"].latencies_ms
    assert again["gslice"].share_timeline == runs["gslice"].share_timeline
    other = run_scenario(sc, ["graft"], seed=4)
    assert other["graft"].latencies_ms != runs["graft"].latencies_ms


def test_a_load_step_forces_a_switch_and_costs_more_share():
    flat = scenario(clients=[group()])
    step = scenario(clients=[group(), group(count=6, start_s=6)])
    base = run_scenario(flat, ["graft"])["graft"]
    run = run_scenario(step, ["graft"])["graft"]
    check_counts(run)
    log.info("flat %s, step %s", base.switches, run.switches)
    assert run.plans >= 1
    assert any(reason == "overloaded" for _, reason in run.switches)
    assert run.share_seconds > base.share_seconds
    before = [s for t, s, _ in run.share_timeline if t < 6]
    after = [s for t, s, _ in run.share_timeline if 9 <= t < 12]
    assert max(after) > max(before)


def test_full_hysteresis_switches_only_when_forced():
    sc = scenario(replan={"period_s": 3, "window_s": 3, "hysteresis": 1.0, "startup_s": 0.5},
                  clients=[group(), group(model="mobilenet_v2", count=2, rate=5, start_s=6,
                                          slo_ms=300)])
    run = run_scenario(sc, ["graft"])["graft"]
    check_counts(run)
    assert run.plans >= 1
    assert run.plans == run.forced_switches
    assert all(reason != "cheaper" for _, reason in run.switches)
    # the new model's requests before its first plan serves are rejected, not lost
    assert run.attainment_by_model["mobilenet_v2"] < 1.0


# ------------------------------------------------------------------ CLI


def test_cli_simulate_writes_summary(tmp_path, capsys):
    path = tmp_path / "s.json"
    path.write_text(json.dumps({"name": "cli", "duration_s": 6, "clients": [group(count=2)],
                                "replan": {"period_s": 3}}))
    out = tmp_path / "out"
    assert main(["simulate", str(path), "--planner", "graft", "--planner", "gslice",
                 "--seed", "1", "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["planners"]) == {"graft", "gslice"}
    for row in summary["planners"].values():
        for key, kind in (("requests", int), ("completed", int), ("rejected", int),
                          ("slo_attainment", float), ("p50_ms", float), ("p99_ms", float),
                          ("share_seconds", float), ("mean_gpus", float)):
            assert isinstance(row[key], kind), key


def test_cli_bad_scenario_is_one_line_naming_the_field(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"duration_s": 5, "clients": [group(rate=-1)]}))
    assert main(["simulate", str(path), "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "clients[0].rate" in err
    assert main(["simulate", str(tmp_path / "missing.json"), "-o", str(tmp_path)]) == 2
    assert "paper" in capsys.readouterr().err


def test_upload_size_fields_reach_the_clients():
    sc = scenario(clients=[group(activation_bytes_per_value=1, input_bytes=25088), group()])
    specs = [c.spec for c in scenario_clients(sc)]
    assert {(s.activation_bytes_per_value, s.input_bytes) for s in specs[:3]} == {(1.0, 25088.0)}
    assert {(s.activation_bytes_per_value, s.input_bytes) for s in specs[3:]} == {(4.0, None)}
    for bad, field in [({"activation_bytes_per_value": 0}, "activation_bytes_per_value"),
                       ({"input_bytes": -5}, "input_bytes")]:
        with pytest.raises(GraftInputError) as e:
            parse_scenario({"duration_s": 10, "clients": [group(**bad)]})
        assert e.value.field == f"clients[0].{field}"


def test_a_directory_skips_files_in_no_trace_format(tmp_path):
    for i in range(2):
        write_rate_csv(markov_trace(30, seed=i), tmp_path / f"t{i}.csv")
    (tmp_path / "iperf").write_text("----\nServer listening on 5201\n----\n")
    sc = scenario(clients=[group(count=3, trace=str(tmp_path))])
    assert [c.spec.trace.name for c in scenario_clients(sc)] == ["t0.csv", "t1.csv", "t0.csv"]


def test_a_scenario_built_in_code_is_bounded_too(monkeypatch):
    from graft.errors import GraftInputError
    from graft.sim.run import run_scenario
    from graft.sim.scenario import paper_scenario

    monkeypatch.setenv("GRAFT_MAX_CLIENTS", "10")
    with pytest.raises(GraftInputError, match="GRAFT_MAX_CLIENTS"):
        run_scenario(paper_scenario(), ["graft"])
