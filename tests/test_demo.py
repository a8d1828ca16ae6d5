"""``make demo`` explains itself: the workload, what total share and the lower bound mean, the
simulator's answer, and what to run next (every suggestion a real command)."""

from __future__ import annotations

import shlex

from graft import demo
from graft.cli import build_parser
from graft.workload.synthetic import DEMO_MODELS


def test_planning_step_explains_the_workload_and_the_table(capsys):
    table = demo.plan_step()
    out = capsys.readouterr().out
    text = " ".join(out.split())  # paragraphs are wrapped
    for words in ("200 client flows over 5 models", "partition point", "server budget",
                  "GPU-seconds per second", "lower bound", "graft models resnet50",
                  "holds", "x gslice's share"):
        assert words in text, words
    for model in DEMO_MODELS:  # one line per model: flows, rate, points, budgets
        line = next(x for x in out.splitlines() if x.strip().startswith(model))
        assert "40 flows" in line and "partition points" in line and "budgets" in line
    assert table in out and "| graft |" in table


def test_simulation_step_answers_gpus_and_misses(tmp_path, capsys):
    lines = demo.simulate_step(tmp_path, 10)
    out = " ".join(capsys.readouterr().out.split())
    assert set(lines) == {"graft", "gslice"}
    assert "at peak" in out and "on average" in out and "client budget too small" in out
    assert (tmp_path / "sim" / "report.md").is_file()


def test_next_steps_are_real_commands():
    parser = build_parser()
    for cmd, _ in demo.NEXT:
        argv = shlex.split(cmd)
        assert argv[0] == "graft"
        parser.parse_args(argv[1:])  # exits 2 on a flag or command that does not exist


def test_the_demo_ends_with_what_to_run_next(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(demo, "simulate_step", lambda out, s: {"graft": "graft: 1 GPU"})
    monkeypatch.setattr(demo, "serve_step", lambda out, d: "| served |")
    assert demo.run_demo(str(tmp_path / "d"), duration_s=1) == 0
    last = capsys.readouterr().out.rstrip().splitlines()[-len(demo.NEXT) - 1:]
    assert last[0].startswith("What to run next")
    assert [line.split()[:2] for line in last[1:]] == [c.split()[:2] for c, _ in demo.NEXT]
    report = (tmp_path / "d" / "demo.md").read_text()
    assert "| served |" in report and "graft: 1 GPU" in report
