"""A plan placed on a cluster, cut per node and served by one ``NodeServer`` per node on
this machine (no Ray): legs, hops and budgets; every fragment through every node's frontend
equals the unsplit model; a node that stops answering makes the requests that need it fail
at once (503) while the others are served."""

from __future__ import annotations

import time

import numpy as np
import pytest

from graft.cost.registry import make_cost_model
from graft.errors import GraftInputError
from graft.plan import rules
from graft.plan.cluster import Cluster, Node
from graft.plan.plan import Plan, Route, Stage
from graft.runtime.nodeplans import Hop, leg_id, split_plan
from graft.runtime.protocol import decode_response, encode_request
from graft.workload.flows import Flow, Workload

from clusterplans import COST_MODEL, WORKLOAD, crossing_plan

COST = make_cost_model(COST_MODEL)


def test_a_crossing_plan_is_cut_into_legs_with_hops_and_budgets():
    plan = crossing_plan()
    parts = split_plan(plan, WORKLOAD, COST)
    a, b, c = (parts.parts[n] for n in "abc")
    assert [s.id for s in a.plan.stages] == ["s0"] and [s.gpus for s in b.plan.stages] == [(0,)]
    assert [f.id for f in a.workload.flows] == ["t0"]
    assert sorted(f.id for f in b.workload.flows) == ["t0@1", "t2"]
    assert sorted(f.id for f in c.workload.flows) == ["t0@2", "t2@1", "t4"]
    assert a.hops == {"t0": Hop("tiny", 2, ("b",))}
    assert b.hops == {"t0@1": Hop("tiny", 4, ("c",)), "t2": Hop("tiny", 4, ("c",))}
    assert c.hops == {}
    assert parts.entries == {("tiny", 0): ("a",), ("tiny", 2): ("b",), ("tiny", 4): ("c",)}
    # a leg's budget is its flow's less what the route plans before it, network included
    chain = [plan.stage_by_id()[s] for s in ("s0", "s1", "s2")]
    before = rules.route_time_ms(COST, chain, plan.placement) - rules.route_time_ms(
        COST, chain[2:], plan.placement)
    budget = {f.id: f.budget_ms for f in c.workload.flows}["t0@2"]
    assert budget == pytest.approx(5000.0 - before)
    assert before > chain[0].exec_ms + chain[1].exec_ms  # two hand-offs across the network
    assert leg_id("t0", 0) == "t0" and leg_id("t0", 2) == "t0@2"


def test_a_stage_spanning_nodes_gets_a_leg_on_each_and_a_hop_from_the_node_without_the_next():
    # s0 has replicas on a and b; s1 only on b: on b the route stays, on a it hops to b
    s0 = Stage("s0", "tiny", 0, 3, 4, 0.1, 2, 1.0, 20.0, gpus=(0, 1))
    s1 = Stage("s1", "tiny", 3, 6, 4, 0.1, 1, 1.0, 20.0, gpus=(1,))
    plan = Plan("hand", COST_MODEL, (s0, s1), (Route("t0", ("s0", "s1"), 10.0),),
                cluster=Cluster((Node("a", 1), Node("b", 1))), gpu_nodes=("a", "b"))
    w = Workload((Flow("t0", "tiny", 0, 20.0, 1000.0),))
    parts = split_plan(plan, w, COST)
    a, b = parts.parts["a"], parts.parts["b"]
    assert [r.stages for r in a.plan.routes] == [("s0",)]
    assert sorted(r.stages for r in b.plan.routes) == [("s0", "s1"), ("s1",)]
    assert a.hops == {"t0": Hop("tiny", 3, ("b",))} and "t0" not in b.hops
    assert [s.rate for s in a.plan.stages] == [10.0]  # half the replicas, half the rate
    assert parts.nodes_of("tiny", 0) == ("a", "b") and parts.nodes_of("tiny", 3) == ("b",)


def test_a_plan_without_a_cluster_cannot_be_cut():
    plan = crossing_plan()
    from dataclasses import replace

    with pytest.raises(GraftInputError, match="not placed on a cluster"):
        split_plan(replace(plan, cluster=None, gpu_nodes=()), WORKLOAD, COST)


def test_requests_between_nodes_round_trip_through_the_protocol():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    body, length = encode_request([("INPUT__0", x)], ["OUTPUT__0"], timeout_us=1500)
    from graft.runtime.protocol import decode_request, encode_response

    req = decode_request(body, length)
    assert req.timeout_us == 1500 and req.outputs == [("OUTPUT__0", True)]
    np.testing.assert_array_equal(req.inputs["INPUT__0"], x)
    for binary in (True, False):
        payload, n = encode_response("tiny.p0", "1", None, [("OUTPUT__0", x, binary)])
        np.testing.assert_array_equal(decode_response(payload, n)["OUTPUT__0"], x)


@pytest.mark.torch
def test_every_fragment_through_every_node_and_a_lost_node_refused_at_once():
    torch = pytest.importorskip("torch")
    th = pytest.importorskip("tritonclient.http")
    from graft.models.chains import build_chain
    from graft.runtime.node import NodeServer

    # a fourth node with no stage: it only forwards
    plan = crossing_plan()
    plan = Plan(plan.planner, plan.cost_model, plan.stages, plan.routes,
                cluster=Cluster((*plan.cluster.nodes, Node("d", 1))), gpu_nodes=plan.gpu_nodes)
    parts = split_plan(plan, WORKLOAD, COST)
    assert parts.parts["d"].plan.stages == ()
    nodes = {n: NodeServer(p, parts.entries, COST, admin_token="t",
                           grpc_port=0 if n == "d" else None)
             for n, p in parts.parts.items()}
    started = []
    try:
        for node in nodes.values():
            node.start()
            started.append(node)
        urls = {n: s.url for n, s in nodes.items()}
        for node in nodes.values():
            node.set_urls(urls)
        chain = build_chain("tiny")
        x = np.random.default_rng(1).standard_normal((3, 3, 32, 32), dtype=np.float32)
        with torch.no_grad():
            want = chain(torch.from_numpy(x)).numpy()
            acts = {p: chain.run(torch.from_numpy(x), 0, p).numpy() for p in (0, 2, 4)}

        def infer(node: str, p: int, **kw) -> np.ndarray:
            client = th.InferenceServerClient(urls[node][7:], network_timeout=30)
            inp = th.InferInput("INPUT__0", list(acts[p].shape), "FP32")
            inp.set_data_from_numpy(acts[p])
            return client.infer(f"tiny.p{p}", [inp], **kw).as_numpy("OUTPUT__0")

        for node in nodes:
            for p in acts:
                np.testing.assert_allclose(infer(node, p, timeout=5_000_000), want, atol=1e-4,
                                           rtol=0)
        # gRPC too: node d holds no stage and sends the request on over HTTP
        tg = pytest.importorskip("tritonclient.grpc")
        grpc_client = tg.InferenceServerClient(f"127.0.0.1:{nodes['d'].grpc_port}")
        inp = tg.InferInput("INPUT__0", list(acts[0].shape), "FP32")
        inp.set_data_from_numpy(acts[0])
        np.testing.assert_allclose(grpc_client.infer("tiny.p0", [inp]).as_numpy("OUTPUT__0"),
                                   want, atol=1e-4, rtol=0)
        meta = th.InferenceServerClient(urls["d"][7:]).get_model_metadata("tiny.p2")
        assert meta["nodes"] == [{"node": "b", "url": urls["b"]}]
        assert th.InferenceServerClient(urls["d"][7:]).is_model_ready("tiny.p4")
        # a node's plan is the controller's to install
        import urllib.error
        import urllib.request

        post = urllib.request.Request(f"{urls['d']}/v2/admin/plan", data=b"{}",
                                      headers={"Authorization": "Bearer t"})
        with pytest.raises(urllib.error.HTTPError, match="409"):
            urllib.request.urlopen(post)
        # too many hops: refused, not sent round again
        with pytest.raises(th.InferenceServerException, match="forwarded 17 times"):
            infer("d", 2, headers={"Graft-Hops": "16"})
        # node b (blocks 2-4) stops: what needs it is refused at once; the rest is served
        nodes["b"].stop()
        started.remove(nodes["b"])
        for entry in ("a", "d"):
            t0 = time.monotonic()
            with pytest.raises(th.InferenceServerException, match=r"\[503\].*no node serving "
                                                                  r"tiny.p2 answers"):
                infer(entry, 0 if entry == "a" else 2, timeout=60_000_000)
            # refused, not left to wait out its minute of budget (a generous bound)
            assert time.monotonic() - t0 < 30.0
        np.testing.assert_allclose(infer("d", 4), want, atol=1e-4, rtol=0)
        metrics = th.InferenceServerClient(urls["a"][7:])  # the server keeps serving
        assert metrics.is_server_live()
    finally:
        for node in started:
            node.stop()
