"""Online re-planning: arrivals for a fragment the plan does not route are refused, seen,
and served after the next re-plan swaps in a plan that routes them."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from graft.cost.registry import make_cost_model  # noqa: E402
from graft.planner.registry import make_planner  # noqa: E402
from graft.runtime.engine import Engine, Rejected  # noqa: E402
from graft.runtime.replanner import Replanner  # noqa: E402
from graft.serving.replan import ReplanConfig  # noqa: E402
from graft.workload.flows import Flow, Workload  # noqa: E402

pytestmark = pytest.mark.torch


def test_replanning_routes_a_fragment_it_saw_refused():
    cost = make_cost_model("profile:tiny-cpu")
    w = Workload((Flow("t0", "tiny", 0, 20.0, 500.0),))
    engine = Engine(make_planner("graft").plan(w, cost), w, cost)
    engine.start()
    try:
        x0 = np.zeros((1, 3, 32, 32), np.float32)
        x3 = np.zeros((1, 24, 8, 8), np.float32)

        async def traffic() -> int:
            refused = 0
            for _ in range(20):
                await engine.infer("tiny", 0, x0)
                try:
                    await engine.infer("tiny", 3, x3, budget_ms=400.0)
                except Rejected:
                    refused += 1
            return refused

        assert asyncio.run(traffic()) == 20
        replanner = Replanner(engine, make_planner("graft"),
                              ReplanConfig(period_s=60.0, window_s=60.0))
        assert replanner.step() == "unrouted"
        assert ("tiny", 3) in engine.fragments
        out = asyncio.run(engine.infer("tiny", 3, x3, budget_ms=400.0))
        assert out.shape == (1, 10)
        # nothing new to route, nothing overloaded: the next step keeps the plan
        assert replanner.step() in (None, "cheaper")
    finally:
        engine.stop()
