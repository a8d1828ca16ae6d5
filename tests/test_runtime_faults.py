"""The runtime under overload and faults: bounded queues answer early with a rejection, a
killed worker's requests get an error and none hang, and service resumes."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from graft.cost.registry import make_cost_model  # noqa: E402
from graft.planner.registry import make_planner  # noqa: E402
from graft.runtime.engine import Engine, Rejected, RequestFailed  # noqa: E402
from graft.workload.flows import Flow, Workload  # noqa: E402

pytestmark = pytest.mark.torch

W = Workload((Flow("t0", "tiny", 0, 50.0, 3000.0), Flow("t3", "tiny", 3, 50.0, 3000.0)))


@pytest.fixture(scope="module")
def engine():
    cost = make_cost_model("profile:tiny-cpu")
    e = Engine(make_planner("gslice").plan(W, cost), W, cost)
    e.start()
    yield e
    e.stop()


def _x(n: int = 1) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((n, 3, 32, 32), dtype=np.float32)


async def _burst(engine: Engine, n: int) -> tuple[int, int, int, int]:
    """Submit ``n`` requests at once: (answered, rejected at once, failed, most in flight)."""
    loop = asyncio.get_running_loop()
    futures, rejected, most = [], 0, 0
    for _ in range(n):
        try:
            futures.append(engine.submit("tiny", 0, _x(), None, loop))
        except Rejected:
            rejected += 1
        most = max(most, engine.in_flight)
    results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 60)
    failed = sum(isinstance(r, RequestFailed) for r in results)
    assert all(isinstance(r, np.ndarray | RequestFailed) for r in results)
    return len(results) - failed, rejected, failed, most


def test_overload_is_refused_early_and_memory_stays_bounded(engine):
    answered, rejected, failed, most = asyncio.run(_burst(engine, 3000))
    assert rejected > 0 and answered > 0
    # requests in flight at once never exceed the queues' bound
    assert most <= sum(engine.pool.queue_cap)
    assert engine.in_flight == 0
    # and the server keeps serving
    assert asyncio.run(engine.infer("tiny", 0, _x(2))).shape == (2, 10)


def test_a_killed_worker_fails_its_requests_and_is_restarted(engine):
    x3 = np.zeros((1, 24, 8, 8), np.float32)
    # the worker serving tiny.p3 (gslice: one stage per fragment)
    victim = next(p for p, spec in zip(engine.pool.procs, engine.pool.specs)
                  if any(m.start == 3 for m in spec.stages))

    async def scenario() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        futures = [engine.submit("tiny", 3, x3, None, loop) for _ in range(12)]
        os.kill(victim.pid, signal.SIGKILL)
        t0 = time.monotonic()
        results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), 30)
        assert time.monotonic() - t0 < 30  # none hangs
        ok = sum(isinstance(r, np.ndarray) for r in results)
        return ok, len(results) - ok

    ok, errors = asyncio.run(scenario())
    assert ok + errors == 12
    deadline = time.monotonic() + 60
    while engine.restarts == 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert engine.restarts >= 1
    # the other fragment kept its service; the lost one resumes once the new pool is up
    assert asyncio.run(engine.infer("tiny", 0, _x())).shape == (1, 10)
    out = None
    while out is None and time.monotonic() < deadline:
        try:
            out = asyncio.run(engine.infer("tiny", 3, x3))
        except (Rejected, RequestFailed):
            time.sleep(0.5)
    assert out is not None and out.shape == (1, 10)
    assert engine.in_flight == 0


def test_workers_exit_when_the_server_is_killed(tmp_path):
    """SIGKILL leaves the server no chance to stop its workers: they notice their parent is
    gone and exit instead of lingering."""
    import json
    import socket
    import subprocess
    import sys
    from pathlib import Path

    def free_port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    (tmp_path / "w.json").write_text(json.dumps({"flows": [
        {"id": "a", "model": "tiny", "partition": 0, "rate": 5, "budget_ms": 500}]}))
    proc = subprocess.Popen(
        [sys.executable, "-m", "graft.cli", "serve", "--workload", str(tmp_path / "w.json"),
         "--cost-model", "profile:tiny-cpu", "--port", str(free_port()),
         "--grpc-port", str(free_port())],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for line in proc.stdout:
            if "serving" in line:
                break
        children = [int(x) for x in
                    Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert children
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def alive(pid: int) -> bool:
        try:
            return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 30
    while any(alive(k) for k in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [k for k in children if alive(k)]
    for k in left:
        os.kill(k, signal.SIGKILL)
    assert not left
