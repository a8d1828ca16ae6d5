"""Clients on traces -> server arrivals -> simulate_requests: conservation, the arithmetic of
one request, partition choice, and an end-to-end run."""

import logging

import numpy as np
import pytest

from graft.client.devices import get_device
from graft.client.traffic import ClientRequest, ClientSpec, generate_requests
from graft.cost.registry import make_cost_model
from graft.models.catalog import get_model
from graft.plan.rules import needed_budget_ms
from graft.planner.headroom import plan_with_headroom
from graft.planner.registry import make_planner
from graft.serving.arrivals import ServerArrival
from graft.serving.lifecycle import RequestState
from graft.serving.observe import attainment_ceiling, observed_workload
from graft.serving.routing import route_requests
from graft.sim.server import make_requests, simulate_plan, simulate_requests
from graft.workload.flows import Flow, Workload
from graft.workload.tracegen import LinkState, MarkovRateModel
from graft.workload.traces import RateTrace

from toycost import ToyCost

TOY = ToyCost(overhead_ms=0.3, batch_exponent=0.8)
W = Workload((Flow("a", "tiny", 0, 900.0, 40.0), Flow("b", "tiny", 2, 1500.0, 30.0),
              Flow("c", "tiny", 4, 600.0, 20.0)))
V100 = make_cost_model("analytic:v100")
log = logging.getLogger(__name__)


def const_trace(mbps: float) -> RateTrace:
    return RateTrace([0.0, 10_000.0], [mbps], name=f"const{mbps:g}")


# ------------------------------------------------------------------ simulate_requests


def test_simulate_requests_matches_simulate_plan_and_conserves():
    plan = plan_with_headroom(make_planner("graft"), W, TOY, max_utilization=0.8)
    ref = simulate_plan(plan, W, TOY, duration_s=2, seed=5, jitter=0.1)
    arrival_seq, _ = np.random.SeedSequence(5).spawn(2)
    reqs = make_requests(W, 2, np.random.default_rng(arrival_seq), "poisson")
    arrivals = [ServerArrival(r.arrival_ms, r.flow, r.deadline_ms, r.model, r.partition)
                for r in reqs]
    got = simulate_requests(plan, arrivals, TOY, seed=5, jitter=0.1, horizon_ms=2000.0)
    assert got.metrics == ref.metrics
    assert got.events == ref.events
    assert [(r.id, r.state, r.completion_ms) for r in got.requests] == \
        [(r.id, r.state, r.completion_ms) for r in ref.requests]
    m = got.metrics
    assert m["requests"] == len(arrivals)
    assert m["completed"] + m["dropped"] + m["rejected"] == len(arrivals)


def test_unrouted_rejected_late_arrival_served_and_ids_follow_input_order():
    plan = make_planner("graft").plan(W, TOY)
    arrivals = [
        ServerArrival(5.0, "a", 45.0, "tiny", 0, tag="x"),
        ServerArrival(1.0, None, 31.0, "tiny", 2, tag="y"),   # no route -> rejected
        ServerArrival(2.0, "b", 1.0, "tiny", 2, tag="z"),     # already past its deadline
    ]
    res = simulate_requests(plan, arrivals, TOY, seed=0)
    states = [r.state for r in res.requests]
    assert [r.id for r in res.requests] == [0, 1, 2]
    assert states == [RequestState.COMPLETED, RequestState.REJECTED, RequestState.COMPLETED]
    assert res.requests[0].on_time and not res.requests[2].on_time
    assert res.metrics["late"] == 1 and res.metrics["rejected"] == 1
    assert res.metrics["requests"] == 3


# ------------------------------------------------------------------ one client, by hand


def test_constant_trace_upload_and_budget_by_hand():
    # tiny, fixed p = 2 on jetson; 8 Mbit/s = 1000 bytes/ms.
    # in_bytes(2) = 16384 B -> upload = 16384 / 1000 = 16.384 ms.
    # result = 40 B at 50 Mbit/s -> download = 8 * 40 / 50e3 = 0.0064 ms.
    # budget = 200 - head - 16.384 - 0.0064 - 20; arrival = send + head + 16.384 + 10.
    assert get_model("tiny").in_bytes(2) == 16384
    assert get_model("tiny").blocks[-1].out_bytes == 40
    c = ClientSpec(id="c", model="tiny", device="jetson", slo_ms=200.0, rate=10.0,
                   trace=const_trace(8.0), arrivals="fixed", policy="fixed", partition=2,
                   rtt_ms=20.0, downlink_mbps=50.0)
    reqs = generate_requests([c], V100, duration_s=1.0, seed=0)
    assert len(reqs) == 10
    head = get_device("jetson").head_ms("tiny", 2)
    for r in reqs:
        assert r.partition == 2
        assert r.upload_ms == pytest.approx(16.384)
        assert r.head_ms == pytest.approx(head)
        assert r.budget_ms == pytest.approx(200.0 - head - 16.384 - 0.0064 - 20.0)
        assert r.arrival_ms == pytest.approx(r.send_ms + head + 16.384 + 10.0)
        assert r.estimate_mbps == pytest.approx(8.0)
        assert r.viable


def hand_neurosurgeon(mbps: float, slo: float, rtt: float, device: str) -> int:
    """Least head + upload + need + download + rtt among points whose budget >= need."""
    spec = get_model("tiny")
    dev = get_device(device)
    down = 8 * spec.blocks[-1].out_bytes / (50.0 * 1e3)
    best = None
    for p in range(spec.num_blocks):
        head = dev.head_ms("tiny", p)
        up = 8 * spec.in_bytes(p) / (mbps * 1e3)
        need = needed_budget_ms(V100, "tiny", p)
        if slo - head - up - down - rtt < need:
            continue
        lat = head + up + need + down + rtt
        if best is None or lat < best[0]:
            best = (lat, p)
    assert best is not None
    return best[1]


@pytest.mark.parametrize("mbps", [0.2, 100.0])
def test_fixed_and_neurosurgeon_pick_the_hand_calculated_point(mbps):
    common = dict(model="tiny", device="rpi", slo_ms=400.0, rate=5.0,
                  trace=const_trace(mbps), arrivals="fixed", rtt_ms=20.0)
    fixed = ClientSpec(id="f", policy="fixed", partition=3, **common)
    ns = ClientSpec(id="n", policy="neurosurgeon", **common)
    reqs = generate_requests([fixed, ns], V100, duration_s=1.0, seed=1)
    picks = {c: {r.partition for r in reqs if r.client == c} for c in ("f", "n")}
    assert picks["f"] == {3}
    assert picks["n"] == {hand_neurosurgeon(mbps, 400.0, 20.0, "rpi")}


def test_neurosurgeon_moves_with_bandwidth():
    slow = hand_neurosurgeon(0.2, 400.0, 20.0, "rpi")
    fast = hand_neurosurgeon(100.0, 400.0, 20.0, "rpi")
    assert slow != fast  # the constructed case is not trivial


# ------------------------------------------------------------------ observed workload, routing


def creq(budget: float, p: int = 2, t: float = 100.0) -> ClientRequest:
    return ClientRequest(client="c", model="tiny", partition=p, send_ms=t - 10, arrival_ms=t,
                         budget_ms=budget, head_ms=1.0, upload_ms=1.0, estimate_mbps=8.0)


def test_observed_workload_classes_unservable_and_routing():
    need = needed_budget_ms(V100, "tiny", 2)
    # class 0: [need, 1.5 need); class 2: [2.25 need, 3.375 need)
    reqs = [creq(need * 1.1), creq(need * 1.2), creq(need * 3.0), creq(need * 0.5),
            creq(-5.0), creq(need * 3.0, t=5000.0)]  # the last is outside the window
    obs = observed_workload(reqs, V100, window_ms=(0.0, 2000.0))
    assert obs.unservable == 2
    flows = obs.workload.by_id()
    assert set(flows) == {"tiny/p2/b0", "tiny/p2/b2"}
    assert flows["tiny/p2/b0"].rate == pytest.approx(1.0)  # 2 requests over 2 s
    assert flows["tiny/p2/b0"].budget_ms == pytest.approx(
        np.percentile([need * 1.1, need * 1.2], 5))
    plan = make_planner("graft").plan(obs.workload, V100)
    routed = route_requests(reqs + [creq(need * 2.0, p=4)], plan, obs.workload, V100)
    # budgets need/2 and -5 are below the tightest route's least latency: rejected at once
    assert plan.least_latency_ms(V100)["tiny/p2/b0"] > need * 0.5
    assert [a.flow for a in routed] == ["tiny/p2/b0", "tiny/p2/b0", "tiny/p2/b2",
                                        None, None, "tiny/p2/b2", None]
    assert routed[2].deadline_ms == pytest.approx(100.0 + need * 3.0)


def test_admission_rejects_only_requests_that_cannot_be_on_time():
    need = needed_budget_ms(V100, "tiny", 2)
    obs = observed_workload([creq(need * 1.1)], V100, window_ms=(0.0, 1000.0))
    plan = make_planner("graft").plan(obs.workload, V100)
    floor = plan.least_latency_ms(V100)["tiny/p2/b0"]
    stages = plan.stage_by_id()
    assert floor == pytest.approx(sum(stages[s].exec_ms for s in plan.routes[0].stages))
    # below the tightest flow's budget, but enough for idle stages: still admitted (best effort)
    routed = route_requests([creq(floor), creq(floor * 0.999)], plan, obs.workload, V100)
    assert [a.flow for a in routed] == ["tiny/p2/b0", None]


# ------------------------------------------------------------------ end to end

WIFI = MarkovRateModel(
    states=(LinkState("good", 60.0), LinkState("fair", 25.0), LinkState("poor", 8.0)),
    transitions=((0.90, 0.08, 0.02), (0.10, 0.85, 0.05), (0.05, 0.15, 0.80)),
    sigma=0.3,
)


def end_to_end(seed: int):
    clients = [ClientSpec(id=f"c{i}", model="resnet50" if i % 2 == 0 else "mobilenet_v2",
                          device="phone-npu" if i % 3 else "jetson", slo_ms=250.0, rate=5.0,
                          trace=WIFI.generate(60, seed=100 + i),
                          estimator="ewma" if i % 4 else "harmonic")
               for i in range(20)]
    reqs = generate_requests(clients, V100, duration_s=20.0, seed=seed)
    obs = observed_workload(reqs, V100, window_ms=(0.0, 20_000.0))
    plan = plan_with_headroom(make_planner("graft"), obs.workload, V100, max_utilization=0.8,
                              allow_partial=True)
    arrivals = route_requests(reqs, plan, obs.workload, V100)
    return reqs, obs, simulate_requests(plan, arrivals, V100, seed=seed)


def test_end_to_end_counts_every_request_once_and_is_deterministic():
    reqs, obs, res = end_to_end(seed=1)
    m = res.metrics
    assert len({r.client for r in reqs}) == 20
    assert m["requests"] == len(reqs) == len(res.requests)
    assert sorted(r.id for r in res.requests) == list(range(len(reqs)))
    assert m["completed"] + m["dropped"] + m["rejected"] == len(reqs)
    assert set(m["per_model"]) == {"resnet50", "mobilenet_v2"}
    assert sum(v["requests"] for v in m["per_model"].values()) == len(reqs)
    assert 0.0 < m["slo_attainment"] <= 1.0
    log.info("end to end: %d requests, %d flows, %d unservable, attainment %.3f %s",
             len(reqs), len(obs.workload.flows), obs.unservable, m["slo_attainment"],
             {k: round(v["slo_attainment"], 3) for k, v in m["per_model"].items()})
    # requests that could not make it (budget below the fragment's need) are never on time
    for req in res.requests:
        if req.deadline_ms < req.arrival_ms:
            assert not req.on_time
    _, obs2, res2 = end_to_end(seed=1)
    assert obs2 == obs
    assert res2.metrics == m


# ------------------------------------------------------------------ upload size options


def test_upload_bytes_int8_activations_and_input_bytes():
    from graft.client.partition import upload_bytes

    spec = get_model("tiny")
    assert upload_bytes(spec, 0) == spec.input_bytes
    assert upload_bytes(spec, 2) == spec.in_bytes(2)
    assert upload_bytes(spec, 2, activation_bytes_per_value=1) == spec.in_bytes(2) // 4
    assert upload_bytes(spec, 0, activation_bytes_per_value=1) == spec.input_bytes
    assert upload_bytes(spec, 0, input_bytes=1000.5) == 1001
    assert upload_bytes(spec, 2, input_bytes=1000) == spec.in_bytes(2)


def test_int8_activations_quarter_the_upload_and_the_prediction_matches():
    # tiny, fixed p = 2 on jetson at 8 Mbit/s = 1000 B/ms: 16384 B fp32 -> 4096 B int8.
    c = ClientSpec(id="c", model="tiny", device="jetson", slo_ms=200.0, rate=10.0,
                   trace=const_trace(8.0), arrivals="fixed", policy="fixed", partition=2,
                   activation_bytes_per_value=1)
    reqs = generate_requests([c], V100, duration_s=1.0, seed=0)
    assert {round(r.upload_ms, 6) for r in reqs} == {4.096}
    from graft.client.partition import choose_partition

    need = lambda m, p: needed_budget_ms(V100, m, p)  # noqa: E731
    ch = choose_partition("fixed", "tiny", get_device("jetson"), 8.0, 200.0, 20.0, need,
                          partition=2, activation_bytes_per_value=1)
    assert ch.upload_ms == pytest.approx(4.096)


def test_input_bytes_sets_the_p0_upload_and_pulls_the_choice_to_p0():
    common = dict(model="tiny", device="rpi", slo_ms=400.0, rate=5.0,
                  trace=const_trace(0.2), arrivals="fixed", rtt_ms=20.0)
    raw = ClientSpec(id="raw", **common)
    jpeg = ClientSpec(id="jpeg", input_bytes=100, **common)
    reqs = generate_requests([raw, jpeg], V100, duration_s=1.0, seed=1)
    picks = {c: {r.partition for r in reqs if r.client == c} for c in ("raw", "jpeg")}
    assert picks["raw"] == {hand_neurosurgeon(0.2, 400.0, 20.0, "rpi")} != {0}
    assert picks["jpeg"] == {0}
    # 100 B at 0.2 Mbit/s = 25 B/ms -> 4 ms
    assert {round(r.upload_ms, 6) for r in reqs if r.client == "jpeg"} == {4.0}


@pytest.mark.parametrize("kw", [{"activation_bytes_per_value": 0},
                                {"activation_bytes_per_value": float("nan")},
                                {"input_bytes": -1}, {"input_bytes": 0}])
def test_bad_upload_sizes_are_rejected(kw):
    from graft.errors import GraftInputError

    with pytest.raises(GraftInputError):
        ClientSpec(id="c", model="tiny", device="jetson", slo_ms=200.0, rate=1.0,
                   trace=const_trace(8.0), **kw)


def test_attainment_ceiling_counts_budgets_at_least_the_fastest():
    need = needed_budget_ms(V100, "tiny", 2)
    fastest = need / 2.0
    reqs = [creq(fastest), creq(fastest * 0.99), creq(need * 3.0), creq(-1.0)]
    assert attainment_ceiling(reqs, V100) == pytest.approx(0.5)
    assert attainment_ceiling([], V100) == 1.0
