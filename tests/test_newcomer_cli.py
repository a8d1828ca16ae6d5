"""What a new user meets first: a model's partition points as a table, -v anywhere, counts
and units that read right ("1 flow", "1 device" on a CPU profile), progress on long steps."""

from __future__ import annotations

import io
import json
import threading

import pytest

from graft.cli import main
from graft.models.catalog import get_model
from graft.models.describe import human_bytes, partition_table
from graft.progress import Heartbeat
from graft.wording import device_word, devices, plural

TINY_FLOW = {"flows": [{"id": "a", "model": "tiny", "partition": 0, "rate": 10,
                        "budget_ms": 50}]}


def test_models_name_shows_every_partition_point(capsys):
    assert main(["models", "resnet50"]) == 0
    out = capsys.readouterr().out
    m = get_model("resnet50")
    rows = [line.split() for line in out.splitlines() if line[:2].strip().isdigit()]
    assert [int(r[0]) for r in rows] == list(range(m.num_blocks + 1))
    # partition 5: the server starts at block 5 and the client uploads its input activation
    assert rows[5][1] == m.blocks[5].name
    assert rows[5][2] == "x".join(map(str, m.in_shape(5)))
    assert " ".join(rows[5][3:5]) == human_bytes(m.in_bytes(5)) == "1.53 MB"
    assert rows[0][2] == "3x224x224" and rows[-1][1] == "(none:"
    assert "the client runs blocks [0, p)" in out


def test_models_name_json_and_errors(capsys):
    assert main(["models", "tiny", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["name"] for m in data["models"]] == ["tiny"]
    assert main(["models", "resnet5000"]) == 2
    assert "unknown model 'resnet5000'" in capsys.readouterr().err
    assert main(["models", "tiny", "--check"]) == 2  # --check measures every model


def test_partition_table_columns_add_up():
    m = get_model("mobilenet_v2")
    lines = partition_table(m).splitlines()
    header = next(i for i, line in enumerate(lines) if "server starts at" in line)
    body = lines[header + 1:]
    assert len(body) == m.num_blocks + 1
    for line in body:  # ... client GFLOP, server GFLOP, weights (number and unit)
        client, server = (float(x) for x in line.split()[-4:-2])
        assert client + server == pytest.approx(m.segment_flops(0, m.num_blocks) / 1e9,
                                                abs=2e-3)


@pytest.mark.parametrize("argv", [["-v", "models", "tiny"], ["models", "tiny", "-v"],
                                  ["models", "-v", "tiny"]])
def test_verbose_before_or_after_the_command(argv, capsys):
    from graft.cli import build_parser

    assert build_parser().parse_args(argv).verbose is True
    assert main(argv) == 0
    assert "tiny" in capsys.readouterr().out


def test_without_v_verbose_is_false():
    from graft.cli import build_parser

    assert build_parser().parse_args(["models"]).verbose is False


def test_plural_and_device_words():
    assert plural(1, "flow") == "1 flow" and plural(2, "flow") == "2 flows"
    assert plural(0, "GPU") == "0 GPUs" and plural(1, "miss", "misses") == "1 miss"
    assert plural(1200, "request") == "1,200 requests"

    class Cpu:
        device = {"kind": "cpu"}

    assert device_word(Cpu()) == "device" and devices(1, Cpu()) == "1 device"
    assert device_word(object()) == "GPU" and devices(3, object()) == "3 GPUs"


def test_verify_says_1_flow_and_device_on_a_cpu_profile(tmp_path, capsys):
    w = tmp_path / "w.json"
    w.write_text(json.dumps(TINY_FLOW))
    plan = str(tmp_path / "p.json")
    assert main(["plan", str(w), "--cost-model", "profile:tiny-cpu", "-o", plan]) == 0
    assert main(["verify", str(w), plan]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("OK: 1 flow routed over 1 stage,") and "on 1 device (" in line
    assert main(["plan", str(w), "-o", plan]) == 0  # analytic:v100: a GPU
    assert main(["verify", str(w), plan]) == 0
    assert "on 1 GPU (" in capsys.readouterr().out


def test_heartbeat_writes_the_latest_status_while_a_step_runs():
    stream = io.StringIO()
    release = threading.Event()
    with Heartbeat("measuring", every_s=0.01, stream=stream) as beat:
        beat.update("model 2/5")
        while beat.lines < 2:  # a step that outlasts a few beats
            release.wait(0.01)
    lines = stream.getvalue().splitlines()
    assert len(lines) >= 2 and all(x.startswith("measuring: ") for x in lines)
    assert lines[-1].endswith(", model 2/5")
    after = len(stream.getvalue())
    release.wait(0.05)
    assert len(stream.getvalue()) == after  # nothing once the step is over


def test_a_short_step_prints_nothing():
    stream = io.StringIO()
    with Heartbeat("quick", every_s=60, stream=stream):
        pass
    assert stream.getvalue() == ""


def test_models_check_reports_progress(monkeypatch, capsys):
    import graft.models.measure as measure

    seen = []

    def fake_regenerate(check: bool, progress) -> list[str]:
        for name in ("tiny", "vgg16"):
            progress(f"measuring {name}")
            seen.append(name)
        return ["vgg16 block 0: flops 1 != measured 2"]

    monkeypatch.setattr(measure, "regenerate", fake_regenerate)
    assert main(["models", "--check"]) == 1
    out = capsys.readouterr().out
    assert seen == ["tiny", "vgg16"]
    assert "1 difference from the committed block table" in out


def test_a_disabled_heartbeat_is_silent():
    stream = io.StringIO()
    with Heartbeat("drawn elsewhere", every_s=0.001, stream=stream, enabled=False) as beat:
        threading.Event().wait(0.02)
        beat.update("still fine")
    assert stream.getvalue() == ""


def test_the_install_heartbeat_keeps_the_exit_status(tmp_path):
    """scripts/heartbeat.sh (the Makefile's install steps): lines while the command runs,
    and the command's own exit status."""
    import os
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "heartbeat.sh"
    out = subprocess.run(["bash", str(script), "installing", "sh", "-c", "sleep 3; exit 3"],
                         capture_output=True, text=True, timeout=60,
                         env={**os.environ, "HEARTBEAT_S": "1"})
    assert out.returncode == 3
    assert "installing: still running (1 s)" in out.stderr
    ok = subprocess.run(["bash", str(script), "x", "true"], capture_output=True, text=True,
                        timeout=60)
    assert ok.returncode == 0 and ok.stderr == ""
