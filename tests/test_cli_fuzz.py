"""Fuzz: every command fed mutated workloads, plans, scenarios, cost queries and profiles.

A seeded mutator changes one or two places of a valid input (a value of another type or
magnitude, a deleted or unknown field, a container swapped for a scalar, deep nesting) or
its bytes (truncated, a byte that is not UTF-8). Every run must end with a documented exit
code, one line on stderr when it is 2, and no traceback, within a generous time bound
(``signal.setitimer`` in-process, ``timeout`` for the few real processes). The bounds of
``graft.limits`` are lowered for the run so that an accepted input stays small.
``GRAFT_FUZZ_CASES`` multiplies the number of cases (e.g. 20 for a long local run).
``serve`` and ``loadgen`` get mutated files and arguments too, against a port in use and an
address that refuses connections, so that no case starts workers or sends a request.
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


# --- serve and loadgen -------------------------------------------------------------------
#: Argument values the serve and loadgen fuzz draws from: wrong types and magnitudes, and
#: valid ones. ``PORT`` is a port something else listens on and ``DEAD`` a URL nobody
#: answers, so a valid case ends at once with exit 2 (no worker starts, no request is sent).
SERVE_ARGS: dict[str, list[str]] = {
    "--grpc-port": ["0", "PORT", "-5", "70000", "y", "1e3"],
    "--replan-every": ["nan", "0", "-1", "1e300", "inf", "0.05", "5"],
    "--hysteresis": ["1", "-0.1", "nan", "0.5"],
    "--device": ["cpu", "gpu", "cuda"],
    "--planner": ["graft", "nexus", "nope"],
    "--cost-model": ["profile:tiny-cpu", "analytic:v100", "bogus", "profile:/nonexistent"],
    "--weights": ["/nonexistent/w.pt", "ROOT", "ROOT/w.json"],
    "--seed": ["-1", "x", "0", "3"],
}
SERVE_PORTS = ["PORT"] * 6 + ["0", "-1", "65536", "99999999999", "x", "", "nan"]
LOADGEN_ARGS: dict[str, list[str]] = {
    "--mode": ["poisson", "concurrency", "poisson", "bogus"],
    "--duration": ["nan", "inf", "0", "-1", "1e9", "abc", "0.5", "20", "86401"],
    "--concurrency": ["0", "-3", "5000", "4096", "1", "x", "1e3"],
    "--seed": ["-1", "x", "0", "3"],
    "--json": ["ROOT", "/nonexistent/r.json", "OUT"],
}
LOADGEN_URLS = ["DEAD"] * 5 + ["DEAD/", "nonsense", "http://", "http://127.0.0.1:99999",
                                "ftp://127.0.0.1:1", "http://[::1"]


def _held_ports() -> tuple[Any, Any]:
    """A socket listening on a port (serve finds it in use) and one bound but not
    listening (loadgen's connections to it are refused)."""
    import socket

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    return busy, dead


def _fill(value: str, names: dict[str, str]) -> str:
    for k, v in names.items():
        value = value.replace(k, v)
    return value


def _serving_argv(kind: str, path: str, rng: random.Random, names: dict[str, str]
                  ) -> list[str]:
    """A ``serve`` or ``loadgen`` command line around the mutated file ``path``, with some
    arguments drawn from the lists above."""
    if kind.startswith("serve"):
        if kind == "serve-plan":
            argv = ["serve", "--plan", path]
            if rng.random() < 0.3:
                argv += ["--workload", names["ROOT"] + "/w.json"]
        else:
            argv = ["serve", "--workload", path, "--cost-model", "profile:tiny-cpu"]
        argv += ["--port", rng.choice(SERVE_PORTS)]
        options = SERVE_ARGS
    else:
        argv = ["loadgen", rng.choice(LOADGEN_URLS), "--quiet"]
        argv += (["--mode", "trace", "--scenario", path] if kind == "loadgen-trace"
                 else ["--workload", path])
        options = LOADGEN_ARGS
    for flag in rng.sample(sorted(options), rng.choice([0, 0, 1, 1, 2, 3])):
        if kind == "loadgen-trace" and flag == "--mode":
            continue
        argv += [flag, rng.choice(options[flag])]
    return [_fill(a, names) for a in argv]


SERVING_CASES = {"serve-workload": 150, "serve-plan": 150, "loadgen": 200,
                 "loadgen-trace": 30}


def test_serve_and_loadgen_on_mutated_input(base: dict[str, Any], tmp_path: Path,
                                            capsys: pytest.CaptureFixture,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """``serve`` and ``loadgen`` fed mutated workloads, plans and scenarios and mutated
    arguments (ports, durations, rates, concurrency, modes): exit 0 or 2, one error line,
    no traceback, within the case bound. No worker may start and no request may be sent:
    the HTTP port is in use and the server's address refuses connections, so valid cases
    stop at those checks (which must come before any work)."""
    import graft.client.loadgen
    import graft.runtime.engine

    def forbidden(what: str) -> Any:
        def fail(*a: Any, **k: Any) -> Any:
            raise AssertionError(f"{what} after the port or server check should have failed")
        return fail

    monkeypatch.setattr(graft.runtime.engine.Pool, "start", forbidden("workers started"))
    monkeypatch.setattr(graft.client.loadgen, "run_open_loop", forbidden("requests sent"))
    monkeypatch.setattr(graft.client.loadgen, "run_closed_loop", forbidden("requests sent"))
    for k, v in FUZZ_LIMITS.items():
        monkeypatch.setenv(k, v)
    busy, dead = _held_ports()
    names = {"PORT": str(busy.getsockname()[1]), "ROOT": str(base["root"]),
             "DEAD": f"http://127.0.0.1:{dead.getsockname()[1]}", "OUT": str(tmp_path / "r")}
    sources = {"serve-workload": TINY_WORKLOAD, "serve-plan": base["plan"],
               "loadgen": TINY_WORKLOAD, "loadgen-trace": SCENARIO}
    reached = 0  # valid cases: stopped by the busy port or the dead server
    try:
        for kind, n in SERVING_CASES.items():
            rng = random.Random(f"graft-fuzz-{kind}")
            for case in range(n * SCALE):
                data = render(mutate(sources[kind], rng) if rng.random() < 0.7
                              else sources[kind], rng)
                path = tmp_path / f"{kind}-{case}.json"
                path.write_bytes(data)
                argv = _serving_argv(kind, str(path), rng, names)
                try:
                    rc, err = run_case(argv, None, capsys, monkeypatch)
                except SystemExit as e:  # argparse: exit 2 and one line
                    rc, err = e.code, capsys.readouterr().err
                what = f"{kind} case {case}: {argv} on {data[:200]!r}"
                assert rc in (0, 2), (what, rc, err)
                assert "Traceback" not in err, (what, err)
                if rc == 2:
                    lines = [ln for ln in err.splitlines() if ln.startswith("graft: error")]
                    assert len(lines) == 1, (what, err)
                    reached += ("cannot listen on" in err or "cannot reach the server" in err)
    finally:
        busy.close()
        dead.close()
    assert reached >= 10, f"only {reached} cases were valid up to the port or server check"


def _group_alive(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, from /proc."""
    alive = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                stat = Path(f"/proc/{d}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[2]) == pgid and stat[0] != "Z":
                alive.append(int(d))
    return alive


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_serve_and_loadgen_in_real_processes(base: dict[str, Any], tmp_path: Path) -> None:
    """Through the entry point, each in a session of its own: valid and damaged input ends
    with exit 2 and one line within the timeout, and nothing of its process group is left
    (on a timeout the whole group is killed, and the case fails)."""
    busy, dead = _held_ports()
    port, url = str(busy.getsockname()[1]), f"http://127.0.0.1:{dead.getsockname()[1]}"
    tiny = tmp_path / "tiny.json"
    tiny.write_text(json.dumps(TINY_WORKLOAD))
    damaged = tmp_path / "plan.json"
    damaged.write_text(json.dumps(mutate(base["plan"], random.Random("graft-fuzz-real"))))
    cases = [["serve", "--workload", str(tiny), "--port", port, "--grpc-port", "0"],
             ["serve", "--workload", str(tiny), "--port", "8", "--grpc-port", port],
             ["serve", "--plan", str(damaged), "--port", port],
             ["loadgen", url, "--workload", str(tiny), "--duration", "3600", "--quiet"],
             ["loadgen", url, "--mode", "concurrency", "--workload", str(tiny)]]
    env = {**os.environ, **FUZZ_LIMITS}
    try:
        for argv in cases:
            proc = subprocess.Popen([sys.executable, "-m", "graft.cli", *argv], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)
            try:
                _, err = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.communicate()
                raise AssertionError(f"{argv} still ran after 60 s") from None
            assert proc.returncode == 2, (argv, err)
            assert "Traceback" not in err and len(err.strip().splitlines()) == 1, (argv, err)
            left = _group_alive(proc.pid)
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            assert not left, (argv, left)
    finally:
        busy.close()
        dead.close()
