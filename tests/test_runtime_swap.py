"""Plan hot swap under load: a verified plan is installed through the admin endpoint while
requests keep coming, and none fails or is lost; a bad plan or a missing token is refused."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from graft.cost.registry import make_cost_model  # noqa: E402
from graft.planner.registry import make_planner  # noqa: E402
from graft.runtime.engine import Engine  # noqa: E402
from graft.workload.flows import Flow, Workload  # noqa: E402

pytestmark = pytest.mark.torch

COST = make_cost_model("profile:tiny-cpu")
W = Workload((Flow("t0", "tiny", 0, 30.0, 3000.0), Flow("t3", "tiny", 3, 30.0, 3000.0)))
TOKEN = "s3cret"


def _admin(port: int, method: str, body: dict | None = None, token: str | None = TOKEN,
           path: str = "plan") -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v2/admin/{path}", method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=120) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_hot_swap_under_load_loses_nothing():
    from graft.runtime.server import BackgroundServer

    first = make_planner("gslice").plan(W, COST)
    second = make_planner("graft").plan(W, COST)
    engine = Engine(first, W, COST)
    with BackgroundServer(engine, admin_token=TOKEN) as srv:
        port = srv.http_port
        # every worker runs on the CPUs its spec pins it to (all of them when unpinned)
        for proc, spec in zip(engine.pool.procs, engine.pool.specs):
            assert os.sched_getaffinity(proc.pid) == (set(spec.cpus) or
                                                      os.sched_getaffinity(0))
        # refused: no token, a wrong one, a plan that fails verification
        assert _admin(port, "GET", token=None)[0] == 401
        assert _admin(port, "GET", token="nope")[0] == 401
        broken = second.to_json()
        broken["stages"][0]["exec_ms"] = 1e-6
        code, body = _admin(port, "POST", {"plan": broken, "workload": W.to_json()})
        assert code == 422 and "verification" in body["error"]
        assert _admin(port, "GET")[1]["plan"]["planner"] == "gslice"

        # load from the test's own loop while the swap runs
        async def load(stop: threading.Event) -> list:
            x0 = np.zeros((1, 3, 32, 32), np.float32)
            x3 = np.zeros((1, 24, 8, 8), np.float32)
            results = []
            while not stop.is_set():
                batch = [engine.infer("tiny", 0, x0), engine.infer("tiny", 3, x3)]
                results += await asyncio.gather(*batch, return_exceptions=True)
                await asyncio.sleep(0.005)
            return results

        stop = threading.Event()
        out: dict = {}
        worker = threading.Thread(target=lambda: out.update(r=asyncio.run(load(stop))))
        worker.start()
        code, body = _admin(port, "POST", {"plan": second.to_json(), "workload": W.to_json()})
        assert code == 200, body
        threading.Event().wait(1.0)
        stop.set()
        worker.join(60)
        results = out["r"]
        assert len(results) > 20
        errors = [r for r in results if not isinstance(r, np.ndarray)]
        assert errors == []
        assert engine.plan.planner == "graft"
        assert _admin(port, "GET")[1]["plan"]["planner"] == "graft"
        # the server's summary (the simulator's summarize) counted every request once
        assert _admin(port, "GET", token=None, path="summary")[0] == 401
        code, summary = _admin(port, "GET", path="summary")
        assert code == 200
        assert summary["requests"] == summary["completed"] == len(results)
        assert summary["rejected"] == summary["dropped"] == 0
        assert summary["per_model"]["tiny"]["requests"] == len(results)
        assert set(summary["per_flow"]) <= {"t0", "t3"}
        assert 0 < summary["p50_ms"] <= summary["p99_ms"]
        # the old workers drain and stop
        deadline = threading.Event()
        for _ in range(200):
            if not engine._draining:
                break
            deadline.wait(0.1)
        assert not engine._draining
        assert engine.in_flight == 0
