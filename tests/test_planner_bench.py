"""bench/planner_bench.py shows each table's header before its rows, as they are measured."""

import argparse
import importlib.util
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "planner_bench.py"


def test_each_table_header_comes_before_its_rows(capsys):
    spec = importlib.util.spec_from_file_location("planner_bench", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("planner_bench", bench)  # its dataclasses look their module up
    spec.loader.exec_module(bench)
    args = argparse.Namespace(cost_model="analytic:v100", quick=True, optimal_time_limit=1.0)
    lines, _ = bench.suite(args, [("homogeneous", 20)])
    err = capsys.readouterr().err.splitlines()
    header = next(i for i, line in enumerate(err) if line.startswith("| workload | flows |"))
    row = next(i for i, line in enumerate(err) if line.startswith("| homogeneous | 20 |"))
    assert err[0].startswith("## Suite") and header < row
    assert lines[-1] == err[row]
