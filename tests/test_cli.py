"""The CLI as a user runs it: formats, exit codes, one-line errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from graft.cli import main


def write(tmp_path, name, data) -> str:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(p)


WORKLOAD = {"flows": [
    {"id": "a", "model": "resnet50", "partition": 0, "rate": 40.0, "budget_ms": 30.0},
    {"id": "b", "model": "resnet50", "partition": 5, "rate": 60.0, "budget_ms": 20.0},
    {"id": "c", "model": "mobilenet_v2", "partition": 3, "rate": 25.0, "budget_ms": 15.0},
]}


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    names = [m["name"] for m in data["models"]]
    assert {"vgg16", "resnet50", "mobilenet_v2", "inception_v3", "vit_b_16"} <= set(names)
    block = data["models"][names.index("resnet50")]["blocks"][0]
    assert set(block) >= {"name", "out_shape", "out_bytes", "flops", "param_bytes"}
    assert data["models"][names.index("resnet50")]["input_shape"] == [3, 224, 224]


def test_cost_reads_stdin(monkeypatch, capsys):
    import io

    q = [{"model": "resnet50", "start": 0, "end": 18, "batch": 1, "share": 1.0},
         {"model": "resnet50", "start": 0, "end": 18, "batch": 8, "share": 0.5}]
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(q)))
    assert main(["cost", "--cost-model", "analytic:v100"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out) == 2 and 0 < out[0] < out[1]


@pytest.mark.parametrize("planner", ["graft", "gslice", "nexus"])
def test_plan_then_verify(tmp_path, capsys, planner):
    w = write(tmp_path, "w.json", WORKLOAD)
    out = str(tmp_path / "plan.json")
    assert main(["plan", w, "--planner", planner, "-o", out]) == 0
    plan = json.loads(Path(out).read_text())
    for key in ("planner", "cost_model", "gpu_sharing", "total_share", "gpus",
                "lower_bound_share", "stages", "routes", "unserved"):
        assert key in plan
    assert plan["planner"] == planner and plan["cost_model"] == "analytic:v100"
    assert {r["flow"] for r in plan["routes"]} == {"a", "b", "c"}
    capsys.readouterr()
    assert main(["verify", w, out]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("OK") and "\n" not in line
    # break a rule: the verifier lists it and exits 1
    plan["stages"][0]["exec_ms"] /= 3
    bad = write(tmp_path, "bad.json", plan)
    assert main(["verify", w, bad]) == 1
    assert "exec_ms" in capsys.readouterr().out


@pytest.mark.parametrize("flow_patch, words", [
    ({"model": "resnet5000"}, "field 'model'"),
    ({"partition": 18}, "field 'partition'"),
    ({"rate": -1}, "field 'rate'"),
    ({"rate": 0}, "field 'rate'"),
    ({"budget_ms": "NaN"}, "field 'budget_ms'"),
    ({"budget_ms": -5}, "field 'budget_ms'"),
])
def test_bad_flow_exit_2_one_line(tmp_path, capsys, flow_patch, words):
    flows = [dict(f) for f in WORKLOAD["flows"]]
    flows[1].update(flow_patch)
    text = json.dumps({"flows": flows}).replace('"NaN"', "NaN")
    assert main(["plan", write(tmp_path, "w.json", text)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "flow 'b'" in err and words in err


def test_other_input_errors(tmp_path, capsys):
    w = write(tmp_path, "w.json", WORKLOAD)
    dup = {"flows": WORKLOAD["flows"] + [WORKLOAD["flows"][0]]}
    cases = [
        (["plan", write(tmp_path, "d.json", dup)], "duplicate flow id"),
        (["plan", write(tmp_path, "m.json", "{oops")], "not valid JSON"),
        (["plan", w, "--planner", "magic"], "unknown planner 'magic'"),
        (["plan", w, "--cost-model", "analytic:gtx480"], "unknown"),
        (["plan", w, "--cost-model", "profile:/nope.json"], "/nope.json"),
        (["plan", str(tmp_path / "missing.json")], "cannot read"),
        (["verify", w, write(tmp_path, "p.json", "[]")], "plan"),
    ]
    for argv, words in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err and "Traceback" not in err, (argv, err)


def test_unservable_flow_needs_allow_partial(tmp_path, capsys):
    flows = [dict(f) for f in WORKLOAD["flows"]]
    flows[0]["budget_ms"] = 0.5
    w = write(tmp_path, "w.json", {"flows": flows})
    assert main(["plan", w]) == 2
    err = capsys.readouterr().err
    assert "flow 'a'" in err and "--allow-partial" in err
    out = str(tmp_path / "plan.json")
    assert main(["plan", w, "--allow-partial", "-o", out]) == 0
    plan = json.loads(Path(out).read_text())
    assert [u["flow"] for u in plan["unserved"]] == ["a"]
    assert plan["unserved"][0]["needed_budget_ms"] > 0.5
    assert main(["verify", w, out]) == 1
    assert main(["verify", w, out, "--allow-partial"]) == 0


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "graft.cli", "models"], capture_output=True,
                         text=True, check=True).stdout
    assert "resnet50" in out


def test_planning_and_verifying_never_import_torch(tmp_path):
    w = write(tmp_path, "w.json", WORKLOAD)
    plan = str(tmp_path / "plan.json")
    code = (
        "import sys\n"
        "from graft.cli import main\n"
        f"assert main(['plan', {w!r}, '-o', {plan!r}]) == 0\n"
        f"assert main(['verify', {w!r}, {plan!r}]) == 0\n"
        f"assert main(['plan', {w!r}, '--planner', 'optimal', '-o', {plan!r}]) == 0\n"
        "sys.exit('torch' in sys.modules)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True).returncode == 0
