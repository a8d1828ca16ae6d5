"""``graft serve --ray`` on a local Ray cluster (``ray.cluster_utils.Cluster``, nodes that
declare GPUs and run CPU workers): one entry point reaches every fragment, and a node lost
under load is re-planned around. Runs where Ray is installed (``pip install -e .[ray]``);
about a minute."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ray")
th = pytest.importorskip("tritonclient.http")

from graft.cost.registry import make_cost_model  # noqa: E402
from graft.models.chains import build_chain  # noqa: E402
from graft.planner.registry import make_planner  # noqa: E402
from graft.runtime.ray_cluster import RayController  # noqa: E402

from clusterplans import COST_MODEL, WORKLOAD, crossing_plan  # noqa: E402

pytestmark = [pytest.mark.torch, pytest.mark.ray]


@pytest.fixture(scope="module")
def ray_cluster():
    import os

    from ray.cluster_utils import Cluster as RayCluster

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    cluster = RayCluster(initialize_head=True,
                         head_node_args={"num_cpus": 1, "include_dashboard": False})
    nodes = [cluster.add_node(num_cpus=1, num_gpus=1) for _ in range(3)]
    cluster.wait_for_nodes()
    yield cluster, nodes
    cluster.shutdown()


def _infer(url: str, name: str, x: np.ndarray, timeout_us: int = 60_000_000) -> np.ndarray:
    client = th.InferenceServerClient(url.split("://", 1)[-1], network_timeout=30)
    inp = th.InferInput("INPUT__0", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return client.infer(name, [inp], timeout=timeout_us).as_numpy("OUTPUT__0")


def test_one_entry_reaches_every_fragment_and_a_lost_node_is_planned_around(ray_cluster):
    cluster, nodes = ray_cluster
    cost = make_cost_model(COST_MODEL)
    planner = make_planner("graft")
    ctl = RayController(cluster.address, WORKLOAD, cost,
                        lambda c: planner.plan(WORKLOAD, c, allow_partial=True),
                        plan=crossing_plan(), port=0, grpc_port=None, watch_period_s=0.5)
    ctl.start()
    try:
        status = ctl.status()
        assert len(status["nodes"]) == 3
        assert sorted(len(n["stages"]) for n in status["nodes"]) == [1, 1, 1]
        chain = build_chain("tiny")
        x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
        with torch.no_grad():
            want = chain(torch.from_numpy(x)).numpy()
            acts = {p: chain.run(torch.from_numpy(x), 0, p).numpy() for p in (0, 2, 4)}
        # every fragment through every node's frontend: served there, or sent on
        for n in status["nodes"]:
            for p, act in acts.items():
                np.testing.assert_allclose(_infer(n["http"], f"tiny.p{p}", act), want,
                                           atol=1e-4, rtol=0)
        meta = th.InferenceServerClient(status["nodes"][0]["http"][7:]).get_model_metadata(
            "tiny.p2")
        assert [m["node"] for m in meta["nodes"]] == [n["node"] for n in status["nodes"]
                                                      if "s1" in n["stages"]]

        # the node of the middle stage leaves under load
        middle = next(n for n in status["nodes"] if "s1" in n["stages"])
        entry = next(n for n in status["nodes"] if "s0" in n["stages"])
        outcomes: list[tuple[float, str]] = []
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set():
                t0 = time.monotonic()
                try:
                    _infer(entry["http"], "tiny.p0", acts[0])
                    outcomes.append((time.monotonic() - t0, "ok"))
                except Exception as e:  # noqa: BLE001 - every error is an outcome
                    outcomes.append((time.monotonic() - t0, str(e)[:300]))
                time.sleep(0.02)

        ctl.watch()
        threads = [threading.Thread(target=load) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(2)
        lost = next(node for node in nodes if node.node_id == middle["node"])
        cluster.remove_node(lost)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and ctl.installed < 2:
            time.sleep(0.5)
        time.sleep(2)
        stop.set()
        for t in threads:
            t.join(60)
        assert not any(t.is_alive() for t in threads)  # no request hangs
        assert ctl.replans >= 1
        # none waited out its minute of budget (a generous bound: they take milliseconds)
        assert all(seconds < 30 for seconds, _ in outcomes), max(outcomes)
        errors = [what for _, what in outcomes if what != "ok"]
        assert outcomes[-1][1] == "ok", outcomes[-3:]  # service resumed
        # requests that needed the lost node were refused at once (503), none failed late
        assert errors and all(e.startswith("[503]") for e in errors), set(errors)
        # after re-planning, every fragment is served again through the entry node
        for p, act in acts.items():
            np.testing.assert_allclose(_infer(entry["http"], f"tiny.p{p}", act), want,
                                       atol=1e-4, rtol=0)

        # a node joins: the controller plans again and starts an agent there
        joined = cluster.add_node(num_cpus=1, num_gpus=1)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and ctl.installed < 3:
            time.sleep(0.5)
        assert joined.node_id in {n["node"] for n in ctl.status()["nodes"]}
        for p, act in acts.items():
            np.testing.assert_allclose(_infer(entry["http"], f"tiny.p{p}", act), want,
                                       atol=1e-4, rtol=0)
    finally:
        ctl.stop()
