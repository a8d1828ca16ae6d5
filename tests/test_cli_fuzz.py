"""Fuzz: every command fed mutated workloads, plans, scenarios, cost queries and profiles.

A seeded mutator changes one or two places of a valid input (a value of another type or
magnitude, a deleted or unknown field, a container swapped for a scalar, deep nesting) or
its bytes (truncated, a byte that is not UTF-8). Every run must end with a documented exit
code, one line on stderr when it is 2, and no traceback, within a generous time bound
(``signal.setitimer`` in-process, ``timeout`` for the few real processes). The bounds of
``graft.limits`` are lowered for the run so that an accepted input stays small.
``GRAFT_FUZZ_CASES`` multiplies the number of cases (e.g. 20 for a long local run).
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from graft.cli import main

SCALE = int(os.environ.get("GRAFT_FUZZ_CASES", "1"))
#: Seconds one in-process command may take before the case fails.
CASE_TIMEOUT_S = 30

WORKLOAD = {"flows": [
    {"id": "a", "model": "resnet50", "partition": 0, "rate": 40.0, "budget_ms": 30.0},
    {"id": "b", "model": "resnet50", "partition": 5, "rate": 60.0, "budget_ms": 20.0},
    {"id": "c", "model": "mobilenet_v2", "partition": 3, "rate": 25.0, "budget_ms": 15.0},
]}
TINY_WORKLOAD = {"flows": [
    {"id": "t1", "model": "tiny", "partition": 0, "rate": 20.0, "budget_ms": 200.0},
    {"id": "t2", "model": "tiny", "partition": 2, "rate": 10.0, "budget_ms": 300.0},
]}
SCENARIO = {"name": "fuzz", "duration_s": 4, "seed": 1, "jitter": 0.05,
            "replan": {"period_s": 2, "window_s": 2, "hysteresis": 0.05, "startup_s": 0.5},
            "clients": [{"count": 2, "model": "mobilenet_v2", "device": "phone-npu",
                         "slo_ms": 300, "rate": 4, "trace": "synthetic:wifi"}]}
QUERIES = [{"model": "resnet50", "start": 0, "end": 5, "batch": 4, "share": 0.5},
           {"model": "vgg16", "start": 2, "end": 9, "batch": 1, "share": 1.0}]

#: Small bounds for the fuzz run: what the mutator makes large is refused fast.
FUZZ_LIMITS = {"GRAFT_MAX_GPUS": "64", "GRAFT_MAX_REQUESTS": "5000",
               "GRAFT_MAX_CLIENTS": "50", "GRAFT_MAX_CLIENT_SECONDS": "2000",
               "GRAFT_MAX_EPOCHS": "20", "GRAFT_MAX_FLOWS": "200",
               "GRAFT_MAX_INPUT_BYTES": "1000000"}

SCALARS: list[Any] = [None, True, False, 0, -1, 1, 2.5, -0.0, 1e-300, 1e300, -1e300,
                      float("nan"), float("inf"), 2**63, 10**30, "", "8", "x" * 300,
                      "resnet50", "\ud800", [], {}, [1, 2], {"k": 1}, [[[]]]]


class CaseTimeout(BaseException):
    """Raised in the case that ran past ``CASE_TIMEOUT_S``."""


def _paths(value: Any, here: tuple = ()) -> Iterator[tuple]:
    yield here
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*here, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*here, i))


def _get(value: Any, path: tuple) -> Any:
    for p in path:
        value = value[p]
    return value


def _mutate_value(old: Any, rng: random.Random) -> Any:
    kind = rng.randrange(6)
    if kind == 0 and isinstance(old, (int, float)) and not isinstance(old, bool):
        return old * rng.choice([-1, 0, 1e-9, 1e3, 1e6, 1e12, 1e300])
    if kind == 1 and isinstance(old, (int, float)) and not isinstance(old, bool):
        return str(old)
    if kind == 2:
        nested: Any = old
        for _ in range(rng.choice([3, 70, 200])):
            nested = [nested]
        return nested
    if kind == 3 and isinstance(old, list) and old:
        return old * rng.choice([2, 50])
    return copy.deepcopy(rng.choice(SCALARS))


def mutate(data: Any, rng: random.Random) -> Any:
    """``data`` with one or two places changed."""
    data = copy.deepcopy(data)
    for _ in range(rng.choice([1, 1, 2])):
        paths = list(_paths(data))
        path = rng.choice(paths)
        if not path:
            if rng.random() < 0.5:
                return _mutate_value(data, rng)
            continue
        parent, key = _get(data, path[:-1]), path[-1]
        action = rng.random()
        if action < 0.15 and isinstance(parent, dict):
            del parent[key]
        elif action < 0.25 and isinstance(parent, dict):
            parent["unknown_" + str(rng.randrange(99))] = 1
        else:
            parent[key] = _mutate_value(parent[key], rng)
    return data


def render(data: Any, rng: random.Random) -> bytes:
    """``data`` as the bytes of a file, now and then damaged."""
    text = json.dumps(data).encode("utf-8", "surrogatepass")
    r = rng.random()
    if r < 0.08:
        return text[: rng.randrange(len(text) + 1)]
    if r < 0.16:
        i = rng.randrange(len(text) + 1)
        return text[:i] + rng.choice([b"\xff", b"\xc3", b"\x00", b"\xe2\x82"]) + text[i:]
    return text


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Valid inputs of every kind, the plan and profile made by graft itself."""
    import contextlib

    root = tmp_path_factory.mktemp("fuzzbase")
    w = root / "w.json"
    w.write_text(json.dumps(WORKLOAD))
    plan = root / "plan.json"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["plan", str(w), "-o", str(plan)]) == 0
    from importlib import resources

    profile = json.loads(resources.files("graft.cost").joinpath(
        "data", "tiny_cpu_profile.json").read_text())
    return {"workload": WORKLOAD, "plan": json.loads(plan.read_text()), "scenario": SCENARIO,
            "queries": QUERIES, "profile": profile, "root": root}


def _commands(kind: str, path: str, base: dict[str, Any], out: Path) -> list[list[str]]:
    root = base["root"]
    w = str(root / "w.json")
    if kind == "workload":
        return [["plan", path], ["verify", path, str(root / "plan.json")],
                ["compare", path, "--planner", "graft", "--planner", "nexus"]]
    if kind == "plan":
        return [["verify", w, path]]
    if kind == "scenario":
        return [["simulate", path, "--planner", "graft", "-o", str(out)]]
    if kind == "queries":
        return [["cost"]]
    tiny = root / "tiny.json"
    if not tiny.exists():
        tiny.write_text(json.dumps(TINY_WORKLOAD))
    return [["plan", str(tiny), "--cost-model", f"profile:{path}"]]


#: Exit codes each command documents: verify 1 = violations; simulate 1 = nothing served.
ALLOWED = {"verify": {0, 1, 2}, "simulate": {0, 1, 2}}


def run_case(argv: list[str], stdin: bytes | None, capsys: pytest.CaptureFixture,
             monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))

    def expire(signum: int, frame: Any) -> None:
        raise CaseTimeout(f"{argv} ran past {CASE_TIMEOUT_S} s")

    old = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, CASE_TIMEOUT_S)
    try:
        rc = main(argv)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return rc, capsys.readouterr().err


CASES = {"workload": 120, "plan": 150, "queries": 150, "profile": 100, "scenario": 30}


@pytest.mark.parametrize("kind", list(CASES))
def test_mutated_inputs(kind: str, base: dict[str, Any], tmp_path: Path,
                        capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in FUZZ_LIMITS.items():
        monkeypatch.setenv(k, v)
    rng = random.Random(f"graft-fuzz-{kind}")
    for case in range(CASES[kind] * SCALE):
        data = render(mutate(base[kind], rng), rng)
        path = tmp_path / f"{kind}-{case}.json"
        path.write_bytes(data)
        for argv in _commands(kind, str(path), base, tmp_path / f"out-{case}"):
            stdin = data if argv == ["cost"] else None
            rc, err = run_case(argv, stdin, capsys, monkeypatch)
            what = f"{kind} case {case}: {argv} on {data[:300]!r}"
            assert rc in ALLOWED.get(argv[0], {0, 2}), (what, rc, err)
            assert "Traceback" not in err, (what, err)
            if rc == 2:
                lines = [ln for ln in err.splitlines() if ln.startswith("graft: error")]
                assert len(lines) == 1, (what, err)


def test_mutated_inputs_in_real_processes(base: dict[str, Any], tmp_path: Path) -> None:
    """A few damaged files through the installed entry point: exit 2, one line, no
    traceback, within a generous timeout."""
    rng = random.Random("graft-fuzz-processes")
    env = {**os.environ, **FUZZ_LIMITS}
    cases = [b"\xff\xfe{}", b"[" * 50_000 + b"]" * 50_000,
             json.dumps(mutate(base["workload"], rng)).encode()]
    for i, data in enumerate(cases):
        path = tmp_path / f"p{i}.json"
        path.write_bytes(data)
        for argv in (["plan", str(path)], ["simulate", str(path), "-o", str(tmp_path / "o")]):
            proc = subprocess.run([sys.executable, "-m", "graft.cli", *argv], env=env,
                                  capture_output=True, text=True, timeout=120)
            assert proc.returncode in (0, 2), (argv, data[:100], proc.stderr)
            assert "Traceback" not in proc.stderr, (argv, proc.stderr)
