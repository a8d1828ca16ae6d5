"""Bad input of every class, in every command that reads it: exit 2 and one line naming the
problem, never a traceback, a hang or runaway memory (``graft.limits`` bounds the sizes);
streams and signals; exit codes that tell the truth."""

from __future__ import annotations

import copy
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from graft import limits
from graft.cli import main

WORKLOAD = {"flows": [
    {"id": "a", "model": "resnet50", "partition": 0, "rate": 40.0, "budget_ms": 30.0},
    {"id": "b", "model": "resnet50", "partition": 5, "rate": 60.0, "budget_ms": 20.0},
    {"id": "c", "model": "mobilenet_v2", "partition": 3, "rate": 25.0, "budget_ms": 15.0},
]}
TINY_WORKLOAD = {"flows": [{"id": "t", "model": "tiny", "partition": 0, "rate": 20.0,
                            "budget_ms": 200.0}]}
SCENARIO = {"name": "small", "duration_s": 4, "seed": 1,
            "replan": {"period_s": 2, "window_s": 2, "startup_s": 0.5},
            "clients": [{"count": 2, "model": "mobilenet_v2", "device": "phone-npu",
                         "slo_ms": 300, "rate": 4, "trace": "synthetic:wifi"}]}
QUERY = {"model": "resnet50", "start": 0, "end": 5, "batch": 4, "share": 0.5}
BAD_BYTES = {
    "not UTF-8": b'\xff\xfe{"flows": []}',
    "nested 100000 deep": b"[" * 100_000 + b"]" * 100_000,
    "nested 65 deep": b"[" * 65 + b"]" * 65,
    "a 5000-digit integer": b'{"flows": [{"partition": ' + b"9" * 5000 + b"}]}",
    "truncated": b'{"flows": [{"id": "a", "mod',
}


def write(tmp_path: Path, name: str, data: object) -> str:
    p = tmp_path / name
    if isinstance(data, bytes):
        p.write_bytes(data)
    else:
        p.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(p)


def one_error(capsys: pytest.CaptureFixture, *words: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("graft: error:"), err
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    return err


@pytest.fixture
def plan_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> dict:
    w = write(tmp_path, "w.json", WORKLOAD)
    out = tmp_path / "plan.json"
    assert main(["plan", w, "-o", str(out)]) == 0
    capsys.readouterr()
    return json.loads(out.read_text())


def commands_reading(kind: str, path: str, tmp_path: Path) -> list[list[str]]:
    """Every command that reads a file of ``kind``, reading ``path``."""
    w = write(tmp_path, "good-w.json", WORKLOAD)
    tiny = write(tmp_path, "tiny-w.json", TINY_WORKLOAD)
    out = str(tmp_path / "out")
    return {
        "workload": [["plan", path], ["compare", path], ["verify", path, path],
                     ["serve", "--workload", path],
                     ["loadgen", "http://127.0.0.1:9", "--workload", path]],
        "plan": [["verify", w, path], ["serve", "--plan", path]],
        "scenario": [["simulate", path, "-o", out],
                     ["loadgen", "http://127.0.0.1:9", "--mode", "trace", "--scenario", path]],
        "profile": [["plan", tiny, "--cost-model", f"profile:{path}"]],
    }[kind]


# --- bytes and structure ------------------------------------------------------------------
@pytest.mark.parametrize("what", list(BAD_BYTES))
@pytest.mark.parametrize("kind", ["workload", "plan", "scenario", "profile"])
def test_bad_bytes_in_every_file(kind, what, tmp_path, capsys):
    path = write(tmp_path, f"{kind}.json", BAD_BYTES[what])
    for argv in commands_reading(kind, path, tmp_path):
        assert main(argv) == 2, argv
        one_error(capsys)


@pytest.mark.parametrize("what", list(BAD_BYTES))
def test_bad_bytes_on_stdin(what, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(BAD_BYTES[what])))
    assert main(["cost"]) == 2
    one_error(capsys, "stdin")


def test_nesting_and_size_messages(tmp_path, capsys, monkeypatch):
    deep = write(tmp_path, "deep.json", BAD_BYTES["nested 100000 deep"])
    assert main(["plan", deep]) == 2
    one_error(capsys, "deeper than 64 levels")
    assert main(["plan", write(tmp_path, "u.json", BAD_BYTES["not UTF-8"])]) == 2
    one_error(capsys, "not UTF-8", "0xff")
    monkeypatch.setenv("GRAFT_MAX_INPUT_BYTES", "100")
    assert main(["plan", write(tmp_path, "w.json", WORKLOAD)]) == 2
    one_error(capsys, "larger than the bound of 100 bytes", "GRAFT_MAX_INPUT_BYTES")


def _set(data: dict, path: tuple, value: object) -> dict:
    data = copy.deepcopy(data)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return data


PLAN_DAMAGE = [
    (("stages",), [1, 2], "stages[0]"),
    (("stages",), "abc", "stages"),
    (("routes",), 5, "routes"),
    (("routes", 0), [], "routes[0]"),
    (("routes", 0, "stages"), "abc", "routes[0].stages"),
    (("routes", 0, "stages"), [1], "routes[0].stages"),
    (("info",), [1], "info"),
    (("unserved",), {"flow": "a"}, "unserved"),
    (("stages", 0, "gpus"), "0", "stages[0].gpus"),
    (("stages", 0, "gpus"), [0.5], "stages[0].gpus"),
    (("stages", 0, "batch"), "8", "stages[0].batch"),
    (("stages", 0, "batch"), 8.5, "stages[0].batch"),
    (("stages", 0, "exec_ms"), None, "stages[0].exec_ms"),
    (("stages", 0, "exec_ms"), 0, "stages[0].exec_ms"),
    (("stages", 0, "share"), "0.5", "stages[0].share"),
    (("stages", 0, "id"), 7, "stages[0].id"),
    (("total_share",), "1", "total_share"),
    (("planner",), None, "planner"),
]


@pytest.mark.parametrize("path, value, field", PLAN_DAMAGE)
def test_plan_of_the_wrong_shape_names_the_field(path, value, field, plan_file, tmp_path,
                                                  capsys):
    bad = write(tmp_path, "bad.json", _set(plan_file, path, value))
    for argv in commands_reading("plan", bad, tmp_path):
        assert main(argv) == 2, argv
        one_error(capsys, f"field {field!r}")


@pytest.mark.parametrize("data, words", [
    ([], "a workload is an object"),
    ({"flows": {}}, "a workload is an object"),
    ({"flows": [7]}, "flows[0] must be an object"),
    ({"flows": [{"id": ["a"]}]}, "field 'id'"),
    (_set(WORKLOAD, ("flows", 0, "rate"), "8"), "field 'rate'"),
    (_set(WORKLOAD, ("flows", 0, "partition"), 2.0), "field 'partition'"),
    (_set(WORKLOAD, ("flows", 0, "model"), {"name": "resnet50"}), "field 'model'"),
])
def test_workload_of_the_wrong_shape(data, words, tmp_path, capsys):
    path = write(tmp_path, "w.json", data)
    for argv in commands_reading("workload", path, tmp_path):
        assert main(argv) == 2, argv
        one_error(capsys, words)


@pytest.mark.parametrize("query, field", [
    ([1], "[0]"),
    ({**QUERY, "batch": "8"}, "[0].batch"),
    ({**QUERY, "share": "0.5"}, "[0].share"),
    ({**QUERY, "model": ["resnet50"]}, "[0].model"),
    ({**QUERY, "start": 1.0}, "[0].start"),
    ({**QUERY, "share": 1e-300}, "[0].share"),
])
def test_cost_query_of_the_wrong_shape(query, field, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps([QUERY, query])))
    assert main(["cost"]) == 2
    one_error(capsys, f"field '{field.replace('[0]', '[1]')}'")


def _profile() -> dict:
    from importlib import resources

    return json.loads(resources.files("graft.cost").joinpath(
        "data", "tiny_cpu_profile.json").read_text())


@pytest.mark.parametrize("path, value, words", [
    (("batches",), ["1", "2"], "'batches' must hold integers"),
    (("shares",), [0.5, "1"], "'shares' must hold finite numbers"),
    (("device",), [1], "'device' must be an object"),
    (("limits", "memory_bytes"), "8000000000", "'limits'"),
    (("models", "tiny", "blocks", 0, "latency_ms", 0, 0), "0.05", "latency_ms"),
    (("models", "tiny"), [], "model 'tiny'"),
    (("batches",), [1, 2, 4, 8, 100_000], "GRAFT_MAX_BATCH"),
])
def test_profile_of_the_wrong_shape(path, value, words, tmp_path, capsys):
    bad = write(tmp_path, "p.json", _set(_profile(), path, value))
    for argv in commands_reading("profile", bad, tmp_path):
        assert main(argv) == 2, argv
        one_error(capsys, words)


@pytest.mark.parametrize("kind, data, field", [
    ("workload", {**WORKLOAD, "comment": "x"}, "comment"),
    ("workload", _set(WORKLOAD, ("flows", 1, "ratee"), 5), "ratee"),
    ("plan", None, "bogus"),
    ("plan", None, "stages[0].bogus"),
    ("plan", None, "routes[0].bogus"),
    ("scenario", {**SCENARIO, "bogus": 1}, "bogus"),
    ("scenario", _set(SCENARIO, ("clients", 0, "bogus"), 1), "clients[0].bogus"),
    ("profile", {**_profile(), "bogus": 1}, "bogus"),
])
def test_unknown_fields_rejected_in_every_command(kind, data, field, plan_file, tmp_path,
                                                   capsys):
    if kind == "plan":
        *where, key = ("bogus",) if field == "bogus" else (field.split(".")[0][:-3], 0, "bogus")
        data = _set(plan_file, (*where, key), 1)
    path = write(tmp_path, f"{kind}.json", data)
    for argv in commands_reading(kind, path, tmp_path):
        assert main(argv) == 2, argv
        one_error(capsys, "unknown field", field if kind != "profile" else "'bogus'")


def test_unknown_query_field(monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps([{**QUERY, "colour": 1}])))
    assert main(["cost"]) == 2
    one_error(capsys, "field '[0].colour'", "unknown field")


# --- magnitudes -------------------------------------------------------------------------
@pytest.mark.parametrize("rate", [1e8, 1e300])
def test_a_huge_rate_is_refused_before_planning(rate, tmp_path, capsys):
    data = _set(WORKLOAD, ("flows", 0, "rate"), rate)
    path = write(tmp_path, "w.json", data)
    for argv in (["plan", path], ["compare", path], ["serve", "--workload", path,
                                                     "--cost-model", "analytic:v100"]):
        assert main(argv) == 2, argv
        one_error(capsys, "lower bound", "above the bound of 1024", "GRAFT_MAX_GPUS")


@pytest.mark.parametrize("u, words", [("1e-300", "GRAFT_MAX_GPUS"), ("nan", "(0, 1]"),
                                      ("0", "(0, 1]"), ("2", "(0, 1]")])
def test_max_utilization_is_bounded(u, words, tmp_path, capsys):
    path = write(tmp_path, "w.json", WORKLOAD)
    assert main(["plan", path, "--max-utilization", u]) == 2
    one_error(capsys, words)


def test_the_gpu_bound_can_be_raised_and_is_checked_after_planning(tmp_path, capsys,
                                                                      monkeypatch):
    from graft.cost.registry import make_cost_model
    from graft.planner.lower_bound import lower_bound_share
    from graft.workload.flows import Flow

    # a tight budget: the plan needs about 2.5 times its lower bound in GPUs
    per_rps = lower_bound_share([Flow("a", "resnet50", 0, 1.0, 12.0)],
                                make_cost_model("analytic:v100"))
    flows = {"flows": [{"id": "a", "model": "resnet50", "partition": 0,
                        "rate": 2.0 / per_rps, "budget_ms": 12.0}]}
    path = write(tmp_path, "w.json", flows)
    monkeypatch.setenv("GRAFT_MAX_GPUS", "1")
    assert main(["plan", path]) == 2
    one_error(capsys, "at least 2 GPUs (its lower bound)", "above the bound of 1;")
    monkeypatch.setenv("GRAFT_MAX_GPUS", "3")
    assert main(["plan", path]) == 2
    one_error(capsys, "the graft plan uses", "GRAFT_MAX_GPUS")
    monkeypatch.setenv("GRAFT_MAX_GPUS", "100")
    assert main(["plan", path, "-o", str(tmp_path / "p.json")]) == 0
    monkeypatch.setenv("GRAFT_MAX_GPUS", "lots")
    assert main(["plan", path]) == 2
    one_error(capsys, "GRAFT_MAX_GPUS must be a positive number")


def test_planning_at_the_default_gpu_bound_finishes(tmp_path):
    """A workload just inside the GPU bound plans (or is refused after planning) in a real
    process well within a generous timeout."""
    from graft.cost.registry import make_cost_model
    from graft.planner.lower_bound import lower_bound_share
    from graft.workload.flows import Flow

    per_rps = lower_bound_share([Flow("a", "resnet50", 0, 1.0, 30.0)],
                                make_cost_model("analytic:v100"))
    rate = 0.95 * limits.GPUS.default / per_rps
    path = write(tmp_path, "w.json", _set(WORKLOAD, ("flows", 0, "rate"), rate))
    proc = subprocess.run([sys.executable, "-m", "graft.cli", "plan", path, "-o",
                           str(tmp_path / "p.json")], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode in (0, 2) and "Traceback" not in proc.stderr, proc.stderr
    if proc.returncode == 2:
        assert "GRAFT_MAX_GPUS" in proc.stderr


def test_flows_per_workload_are_bounded(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GRAFT_MAX_FLOWS", "2")
    assert main(["plan", write(tmp_path, "w.json", WORKLOAD)]) == 2
    one_error(capsys, "3 flows", "GRAFT_MAX_FLOWS")


@pytest.mark.parametrize("path, value, words", [
    (("stages", 0, "replicas"), 10**9, "processes need at least"),
    (("stages", 0, "gpus"), [10**9], "GPU 1000000000"),
    (("stages", 0, "batch"), 10**6, "GRAFT_MAX_BATCH"),
])
def test_plan_files_are_bounded(path, value, words, plan_file, tmp_path, capsys):
    bad = write(tmp_path, "bad.json", _set(plan_file, path, value))
    for argv in commands_reading("plan", bad, tmp_path):
        assert main(argv) == 2, argv
        one_error(capsys, words, "to raise it")


@pytest.mark.parametrize("path, value, words", [
    (("clients", 0, "count"), 10**9, "GRAFT_MAX_CLIENTS"),
    (("clients", 0, "rate"), 1e8, "GRAFT_MAX_REQUESTS"),
    (("duration_s",), 1e9, "GRAFT_MAX_CLIENT_SECONDS"),
    (("replan",), {"period_s": 1e-6}, "GRAFT_MAX_EPOCHS"),
    (("clients", 0, "input_bytes"), 1e300, "clients[0].input_bytes"),
    (("clients", 0, "activation_bytes_per_value"), 1e300, "activation_bytes_per_value"),
    (("clients", 0, "rate"), "4", "clients[0].rate"),
    (("seed",), -1, "seed"),
])
def test_scenario_sizes_are_refused_before_simulating(path, value, words, tmp_path, capsys):
    bad = write(tmp_path, "s.json", _set(SCENARIO, path, value))
    for argv in commands_reading("scenario", bad, tmp_path):
        assert main(argv) == 2, argv
        one_error(capsys, words)


def test_a_scenario_within_lowered_bounds_runs(tmp_path, capsys, monkeypatch):
    """Each simulation bound is the quantity it names: just below it runs, above it not."""
    expected = 2 * 4 * 4  # count x rate x duration_s
    monkeypatch.setenv("GRAFT_MAX_REQUESTS", str(expected))
    monkeypatch.setenv("GRAFT_MAX_CLIENTS", "2")
    monkeypatch.setenv("GRAFT_MAX_CLIENT_SECONDS", "8")
    monkeypatch.setenv("GRAFT_MAX_EPOCHS", "2")
    path = write(tmp_path, "s.json", SCENARIO)
    assert main(["simulate", path, "--planner", "graft", "-o", str(tmp_path / "o")]) in (0, 1)
    capsys.readouterr()
    for env in ("GRAFT_MAX_REQUESTS", "GRAFT_MAX_CLIENTS", "GRAFT_MAX_CLIENT_SECONDS",
                "GRAFT_MAX_EPOCHS"):
        value = os.environ[env]
        monkeypatch.setenv(env, str(float(value) - 1))
        assert main(["simulate", path, "-o", str(tmp_path / "o")]) == 2, env
        one_error(capsys, env)
        monkeypatch.setenv(env, value)


def _trace_folder(folder: Path, n: int) -> Path:
    from graft.workload.tracegen import markov_trace, write_rate_csv

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        write_rate_csv(markov_trace(10, seed=i), folder / f"t{i}.csv")
    return folder


def test_trace_files_are_counted_before_any_is_read(tmp_path, capsys, monkeypatch):
    """A trace folder (named by a scenario, relative to the file or to --trace-dir) with
    more files than GRAFT_MAX_TRACE_FILES exits 2 with one line before a file is read;
    folders and files of several groups count together."""
    import graft.sim.scenario

    traces = tmp_path / "traces"
    _trace_folder(traces / "a", 3)
    _trace_folder(traces / "b", 2)
    one_folder = _set(SCENARIO, ("clients", 0, "trace"), "a")
    two = _set(one_folder, ("clients",), [one_folder["clients"][0],
                                          {**one_folder["clients"][0], "trace": "b"}])
    in_dir = write(traces, "one.json", one_folder)
    elsewhere = write(tmp_path, "two.json", two)

    def no_read(*a, **k):
        raise AssertionError("a trace file was read before the count was checked")

    monkeypatch.setattr(graft.sim.scenario, "load_trace", no_read)
    monkeypatch.setenv("GRAFT_MAX_TRACE_FILES", "2")
    out = str(tmp_path / "o")
    for argv in (["simulate", in_dir, "--trace-dir", str(traces), "-o", out],
                 ["simulate", in_dir, "-o", out],
                 ["loadgen", "http://127.0.0.1:9", "--mode", "trace", "--scenario", in_dir]):
        assert main(argv) == 2, argv
        one_error(capsys, "clients[0].trace", "holds more than 2 trace files",
                  "GRAFT_MAX_TRACE_FILES")
    monkeypatch.setenv("GRAFT_MAX_TRACE_FILES", "4")  # 3 + 2 files in all
    assert main(["simulate", elsewhere, "--trace-dir", str(traces), "-o", out]) == 2
    one_error(capsys, "clients[1].trace", "past 4 trace files", "GRAFT_MAX_TRACE_FILES")
    monkeypatch.setenv("GRAFT_MAX_TRACE_FILES", "0.5")
    assert main(["simulate", in_dir, "-o", out]) == 2  # a bound below one file: none allowed
    one_error(capsys, "GRAFT_MAX_TRACE_FILES")


def test_trace_files_within_the_bound_are_read(tmp_path, monkeypatch):
    from graft.sim.scenario import load_scenario, scenario_clients

    traces = tmp_path / "traces"
    _trace_folder(traces / "a", 3)
    _trace_folder(traces / "b", 2)
    sc = _set(SCENARIO, ("clients", 0, "trace"), "a")
    sc = _set(sc, ("clients",), [sc["clients"][0], {**sc["clients"][0], "trace": "b"},
                                 {**sc["clients"][0], "trace": "b/t1.csv"}])
    path = write(traces, "s.json", sc)
    monkeypatch.setenv("GRAFT_MAX_TRACE_FILES", "5")  # b/t1.csv is counted once
    names = [c.spec.trace.name for c in scenario_clients(load_scenario(path))]
    assert names == ["t0.csv", "t1.csv", "t0.csv", "t1.csv", "t1.csv", "t1.csv"]


@pytest.mark.parametrize("query, words", [
    ({**QUERY, "batch": 10**9}, "GRAFT_MAX_BATCH"),
    ({**QUERY, "end": 10**30}, "not within"),
])
def test_cost_query_magnitudes(query, words, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps([query])))
    assert main(["cost"]) == 2
    one_error(capsys, words)


@pytest.mark.parametrize("extra, words", [
    (["--batches", "100000"], "GRAFT_MAX_BATCH"),
    (["--batches", "1,x"], "--batches takes integers"),
    (["--warmup", "-1"], "--warmup"),
])
def test_profile_arguments_refused_before_torch_loads(extra, words, tmp_path, capsys):
    assert main(["profile", "tiny", "-o", str(tmp_path / "p.json"), *extra]) == 2
    one_error(capsys, words)


@pytest.mark.torch
def test_profile_work_and_memory_are_bounded(tmp_path, capsys, monkeypatch):
    out = str(tmp_path / "p.json")
    assert main(["profile", "vgg16", "-o", out, "--batches", "1,2,4,8,16,32,64,128,256,512",
                 "--repeats", "500"]) == 2
    one_error(capsys, "TFLOP", "GRAFT_MAX_PROFILE_TFLOP")
    monkeypatch.setenv("GRAFT_MAX_BATCH", "100000")
    monkeypatch.setenv("GRAFT_MAX_PROFILE_TFLOP", "1e9")
    assert main(["profile", "vgg16", "-o", out, "--batches", "50000", "--repeats", "1",
                 "--warmup", "0"]) == 2
    one_error(capsys, "GiB", "use smaller --batches")
    assert not Path(out).exists()


def test_loadgen_sizes(tmp_path, capsys):
    huge = write(tmp_path, "w.json", _set(WORKLOAD, ("flows", 0, "rate"), 1e300))
    assert main(["loadgen", "http://127.0.0.1:9", "--workload", huge, "--quiet"]) == 2
    one_error(capsys, "GRAFT_MAX_REQUESTS")
    for d in ("nan", "inf", "0", "-1"):
        assert main(["loadgen", "http://127.0.0.1:9", "--workload", huge, "--duration", d]) == 2
        one_error(capsys, "--duration")


def test_serve_worker_bound(plan_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("GRAFT_MAX_WORKERS", "1")
    path = write(tmp_path, "plan.json", plan_file)
    assert main(["serve", "--plan", path]) == 2
    one_error(capsys, "worker processes", "GRAFT_MAX_WORKERS")


def test_serve_refuses_a_port_in_use_before_workers_start(tmp_path, capsys, monkeypatch):
    import socket

    import graft.runtime.engine

    def no_workers(*a, **k):
        raise AssertionError("workers started before the ports were checked")

    monkeypatch.setattr(graft.runtime.engine.Pool, "start", no_workers)
    w = write(tmp_path, "w.json", TINY_WORKLOAD)
    with socket.socket() as held, socket.socket() as free:
        held.bind(("127.0.0.1", 0))
        held.listen()
        free.bind(("127.0.0.1", 0))
        port, other = str(held.getsockname()[1]), str(free.getsockname()[1])
        free.close()
        for ports in (["--port", port, "--grpc-port", "0"], ["--port", other, "--grpc-port", port]):
            assert main(["serve", "--workload", w, *ports]) == 2, ports
            one_error(capsys, f"cannot listen on 127.0.0.1:{port}: Address already in use")


def test_loadgen_refuses_a_server_that_does_not_answer(tmp_path, capsys, monkeypatch):
    """Nobody listening, a URL that is not http: exit 2 and one line before any request."""
    import socket

    import graft.client.loadgen

    def no_traffic(*a, **k):
        raise AssertionError("requests sent to a server that does not answer")

    monkeypatch.setattr(graft.client.loadgen, "run_open_loop", no_traffic)
    monkeypatch.setattr(graft.client.loadgen, "run_closed_loop", no_traffic)
    w = write(tmp_path, "w.json", TINY_WORKLOAD)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        url = f"http://127.0.0.1:{unused.getsockname()[1]}"
        for argv, words in [([url], "Connection refused"),
                            ([url, "--mode", "concurrency"], "Connection refused"),
                            ([url, "--mode", "trace", "--scenario", "paper", "--duration", "1"],
                             "Connection refused"),
                            (["127.0.0.1:8000"], "must start with http://"),
                            (["http://127.0.0.1:99999"], "not a valid http address")]:
            assert main(["loadgen", *argv, "--workload", w, "--quiet"]) == 2, argv
            one_error(capsys, *(["cannot reach the server"] if "Conn" in words else []), words)


def test_loadgen_takes_any_http_answer_as_a_server():
    """A server without the v2 health endpoint (404) is still a server to measure."""
    import asyncio
    import threading

    from aiohttp import web

    from graft.client.loadgen import check_server

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(web.Application())
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        check_server(f"http://127.0.0.1:{port}")
        check_server(f"http://127.0.0.1:{port}/")
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(runner.cleanup())
        loop.close()


@pytest.mark.parametrize("argv", [["simulate", "paper", "-o", "x", "--seed", "-1"],
                                  ["compare", "--seed", "-5"], ["compare", "--seed", "x"]])
def test_seeds_are_non_negative_integers(argv, capsys):
    with pytest.raises(SystemExit) as e:  # argparse's error: exit 2, one line
        main(argv)
    assert e.value.code == 2
    one_error(capsys, "--seed", "must be an integer >= 0")


def test_every_bound_is_documented():
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    for b in limits.ALL:
        assert b.env in readme, b.env


# --- streams and signals ----------------------------------------------------------------
def _graft(shell: str) -> subprocess.CompletedProcess:
    cmd = f"{sys.executable} -m graft.cli {shell}"
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("shell, rc, words", [
    ("cost <&-", 2, "stdin: it is closed"),
    ("plan - <&-", 2, "stdin: it is closed"),
    ("models > /dev/full", 2, "cannot write to stdout: No space left on device"),
    ("models >&-", 2, "cannot write to stdout: it is closed"),
    ("models --json | head -c 10 > /dev/null", 0, ""),
])
def test_closed_and_full_streams(shell, rc, words):
    proc = _graft(shell)
    assert proc.returncode == rc, proc.stderr
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert words in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == (1 if words else 0), proc.stderr


def test_output_paths_checked_before_work(tmp_path, capsys, monkeypatch):
    import graft.demo
    import graft.sim.run

    w = write(tmp_path, "w.json", WORKLOAD)
    missing = str(tmp_path / "nope" / "x.json")
    a_file = write(tmp_path, "file", "x")
    cases = [
        (["plan", w, "-o", str(tmp_path)], "is a directory"),
        (["plan", w, "-o", missing], "does not exist"),
        (["profile", "tiny", "-o", missing], "does not exist"),
        (["profile", "tiny", "-o", str(tmp_path)], "is a directory"),
        (["simulate", "paper", "-o", a_file], "is not a folder"),
        (["simulate", "paper", "-o", str(Path(a_file) / "sub")], "is not a folder"),
        (["loadgen", "http://127.0.0.1:9", "--workload", w, "--json", missing],
         "does not exist"),
        (["loadgen", "http://127.0.0.1:9", "--workload", w, "--csv", str(tmp_path)],
         "is a directory"),
        (["demo", "-o", a_file], "is not a folder"),
    ]

    def no_work(*a, **k):
        raise AssertionError("ran before checking the output path")

    monkeypatch.setattr(graft.sim.run, "run_scenario", no_work)
    monkeypatch.setattr(graft.demo, "run_demo", no_work)
    for argv, words in cases:
        assert main(argv) == 2, argv
        one_error(capsys, words)


def test_ctrl_c_in_process(monkeypatch, capsys):
    import graft.cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(graft.cli, "cmd_models", interrupted)
    assert main(["models"]) == 130
    assert capsys.readouterr().err == "graft: interrupted\n"


def test_ctrl_c_in_a_real_process():
    """SIGINT while ``graft cost`` waits on stdin: one line, exit 130."""
    code = ("import sys, graft.cli\nprint('ready', flush=True)\n"
            "sys.exit(graft.cli.main(['cost']))\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert err == "graft: interrupted\n"


def _group(pgid: int) -> dict[int, tuple[str, str]]:
    """The live processes of process group ``pgid``: pid -> (state, command line)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{d}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if int(stat[2]) == pgid and stat[0] != "Z":  # a zombie is dead, only not yet reaped
            out[int(d)] = (stat[0], cmd)
    return out


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("target, delay_s", [("group", 0.0), ("process", 0.5)])
def test_ctrl_c_while_serve_starts_its_workers(target, delay_s, tmp_path):
    """SIGINT to the process group (a Ctrl-C) as soon as a worker is spawned, or to the
    command alone while its workers load: exit 130, one line, and no process of the
    group left (the workers are terminated and waited for)."""
    import socket

    w = write(tmp_path, "w.json", TINY_WORKLOAD)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "graft.cli", "serve", "--workload", w, "--cost-model",
         "profile:tiny-cpu", "--port", str(port), "--grpc-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not any("spawn_main" in cmd for _, cmd in _group(proc.pid).values()):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no worker was spawned"
            time.sleep(0.005)
        time.sleep(delay_s)
        if target == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert "graft serving" not in out, "the workers were ready before the signal"
        assert proc.returncode == 130, err
        assert err == "graft: interrupted\n"
        deadline = time.monotonic() + 30  # the resource tracker ends when it sees EOF
        while _group(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _group(proc.pid), _group(proc.pid)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in _group(proc.pid):
            os.kill(pid, signal.SIGKILL)


# --- honest exit codes ------------------------------------------------------------------
def test_compare_fails_when_every_planner_failed(tmp_path, capsys):
    path = write(tmp_path, "w.json", _set(WORKLOAD, ("flows", 0, "budget_ms"), 0.001))
    assert main(["compare", path]) == 2
    one_error(capsys, "no planner could plan", "budget_ms")


def test_compare_exits_1_on_an_invalid_plan(capsys, monkeypatch):
    import graft.planner.compare

    monkeypatch.setattr(graft.planner.compare, "verify", lambda *a, **k: ["broken"])
    assert main(["compare", "--planner", "nexus"]) == 1
    assert "fails verification" in capsys.readouterr().err


def test_calibrate_without_data(monkeypatch, tmp_path, capsys):
    from graft.cost import calibration

    monkeypatch.setattr(calibration, "find_data_dir", lambda data_dir=None: None)
    assert main(["calibrate"]) == 2
    one_error(capsys, "calibration data not found", "--data-dir")
    monkeypatch.undo()
    assert main(["calibrate", "--data-dir", str(tmp_path / "missing")]) == 2
    one_error(capsys, "not found")
    bad = tmp_path / "bad"
    (bad / "igniter-v100-mps").mkdir(parents=True)
    (bad / "igniter-v100-mps" / "mps_solo_trtexec_summary.csv").write_text("a,b\n1,2\n")
    assert main(["calibrate", "--data-dir", str(bad)]) == 2
    one_error(capsys, "malformed")
    (bad / "igniter-v100-mps" / "mps_solo_trtexec_summary.csv").write_bytes(b"\xff\xfe\n")
    assert main(["calibrate", "--data-dir", str(bad)]) == 2
    one_error(capsys, "cannot read calibration data")


def test_calibration_fit_in_a_fresh_clone(monkeypatch, capsys):
    from graft.cost import calibration

    monkeypatch.setattr(calibration, "find_data_dir", lambda data_dir=None: None)
    assert calibration.main(["--fit"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "calibration data not found" in err and "--data-dir" in err
    proc = subprocess.run([sys.executable, "-m", "graft.cost.calibration", "--fit",
                           "--data-dir", "/nonexistent"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr


def test_simulate_warns_and_fails_when_nothing_is_served(tmp_path, capsys):
    data = _set(SCENARIO, ("clients", 0, "slo_ms"), 1)  # no budget left after the upload
    path = write(tmp_path, "s.json", data)
    assert main(["simulate", path, "--planner", "graft", "-o", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "graft: warning: graft: none of" in err and "Traceback" not in err
    assert (tmp_path / "o" / "report.md").exists()


@pytest.mark.torch
def test_profile_refuses_shares_it_cannot_give(tmp_path, capsys, monkeypatch):
    from graft.cost import profiler

    monkeypatch.setattr(profiler, "cpu_cores", lambda: 2)
    out = str(tmp_path / "p.json")
    assert main(["profile", "tiny", "-o", out, "--shares", "0.1,1"]) == 2
    one_error(capsys, "share 0.1 cannot be given on cpu", "2 cores")
    assert profiler.giveable_shares("cpu", [0.5, 1.0]) == [0.5, 1.0]
    assert profiler.giveable_shares("cuda", [0.25, 1.0]) == [0.25, 1.0]
    with pytest.raises(Exception, match="whole MPS percentage"):
        profiler.giveable_shares("cuda", [0.255])
    assert not Path(out).exists()


def test_a_failing_disk_is_one_line(tmp_path, capsys, monkeypatch):
    import graft.sim.report

    def full(*a, **k):
        raise OSError(28, "No space left on device", str(tmp_path / "o" / "report.md"))

    monkeypatch.setattr(graft.sim.report, "write_report", full)
    path = write(tmp_path, "s.json", SCENARIO)
    assert main(["simulate", path, "--planner", "graft", "-o", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("graft: error: No space left on device: ")
    assert not any("Traceback" in line for line in err)
