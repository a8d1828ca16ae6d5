"""Client side: device presets, bandwidth estimators, partition policies (hand-checked)."""

from __future__ import annotations

import numpy as np
import pytest

from graft.client import (
    DEVICES,
    POLICIES,
    DeviceModel,
    EwmaEstimator,
    HarmonicEstimator,
    choose_partition,
    evaluate_points,
    get_device,
)
from graft.client.estimator import DEFAULT_PRIOR_MBPS, MIN_SAMPLE_MBPS, BandwidthEstimator
from graft.client.partition import choose_partitions, upload_bytes, upload_bytes_all
from graft.cost.registry import make_cost_model
from graft.errors import GraftInputError, UnknownNameError
from graft.models.catalog import get_model, model_names
from graft.models.spec import BlockSpec, ModelSpec
from graft.plan.rules import needed_budget_ms

# A toy chain: input 1000 floats = 4000 B; blocks of 10, 20 and 5 MFLOP; outputs 2000, 500, 40 B.
TOY = ModelSpec(
    name="toy3",
    input_shape=(1000,),
    blocks=(
        BlockSpec("b0", (500,), 2000, 10e6, 0),
        BlockSpec("b1", (125,), 500, 20e6, 0),
        BlockSpec("b2", (10,), 40, 5e6, 0),
    ),
)
# 1 GFLOP/s, no memory term (no bytes), no kernel overhead: head = 0, 10, 30 ms at p = 0, 1, 2.
# Energy: 1 W computing (1 mJ per ms), 0.1 W transmitting.
TOY_DEVICE = DeviceModel(
    name="toy", peak_flops=1e9, efficiency=1.0, mem_bandwidth=1e12, kernel_overhead_s=0.0,
    active_w=1.0, tx_w=0.1, idle_w=0.0,
)
SERVER = {0: 12.0, 1: 8.0, 2: 3.0}
# Result 40 B at 0.32 Mbit/s: 8 * 40 / 320 = 1 ms download. RTT 5 ms.
DOWN = 0.32
RTT = 5.0


def _server(model: str, p: int) -> float:
    assert model == "toy3"
    return SERVER[p]


def _choose(policy: str, bw: float, slo: float, **kw):
    return choose_partition(policy, TOY, TOY_DEVICE, bw, slo, RTT, _server,
                            downlink_mbps=DOWN, **kw)


# ---------------------------------------------------------------- devices

def test_toy_head_ms_by_hand():
    assert [TOY_DEVICE.head_ms(TOY, p) for p in range(4)] == pytest.approx([0, 10, 30, 35])
    assert TOY_DEVICE.head_energy_mj(TOY, 2) == pytest.approx(30.0)  # 1 W * 30 ms


def test_roofline_memory_bound_block_plus_kernel_overhead():
    # 1 MFLOP at 1 GFLOP/s = 1 ms compute; 3000 B at 1 MB/s = 3 ms memory; + 4 kernels * 0.5 ms.
    spec = ModelSpec("m", (1,), (BlockSpec("b", (1,), 4, 1e6, 2000, kernels=4,
                                           traffic_bytes=1000),))
    dev = DeviceModel("d", 1e9, 1.0, 1e6, 0.5e-3, 1.0, 1.0, 0.0)
    assert dev.head_ms(spec, 1) == pytest.approx(3.0 + 2.0)


@pytest.mark.parametrize("device", sorted(DEVICES))
def test_presets_head_zero_then_increasing(device):
    dev = get_device(device)
    for name in model_names():
        spec = get_model(name)
        heads = [dev.head_ms(name, p) for p in range(spec.num_blocks + 1)]
        assert heads[0] == 0.0
        assert all(b > a for a, b in zip(heads, heads[1:])), name
        assert dev.head_energy_mj(name, spec.num_blocks) == pytest.approx(
            dev.active_w * heads[-1])


def test_presets_rank_plausibly():
    # ResNet-50 on the whole device: accelerators beat the phone CPU, which beats a Pi 4.
    full = {d: get_device(d).head_ms("resnet50", 18) for d in DEVICES}
    assert full["jetson"] < full["phone-cpu"] < full["rpi"]
    assert full["phone-npu"] < full["phone-cpu"]
    assert 5 < full["jetson"] < 100 and 200 < full["rpi"] < 5000


def test_unknown_device_and_bad_partition():
    with pytest.raises(UnknownNameError) as e:
        get_device("toaster")
    assert e.value.kind == "device" and "rpi" in e.value.choices
    with pytest.raises(GraftInputError):
        TOY_DEVICE.head_ms(TOY, 4)
    with pytest.raises(GraftInputError):
        DeviceModel("bad", 1e9, 0.0, 1e9, 0.0, 1.0, 1.0, 0.0)


# ---------------------------------------------------------------- estimators

def test_ewma_by_hand():
    est = EwmaEstimator(alpha=0.5)
    assert est.estimate_mbps() == DEFAULT_PRIOR_MBPS
    est.update(4.0)  # first sample replaces the prior: 4
    assert est.estimate_mbps() == pytest.approx(4.0)
    est.update(8.0)  # 0.5 * 8 + 0.5 * 4 = 6
    assert est.estimate_mbps() == pytest.approx(6.0)
    est.update(2.0)  # 0.5 * 2 + 0.5 * 6 = 4
    assert est.estimate_mbps() == pytest.approx(4.0)


def test_harmonic_by_hand():
    est = HarmonicEstimator(window=3, prior_mbps=7.0)
    assert est.estimate_mbps() == 7.0
    est.update(1.0)
    est.update(2.0)  # 2 / (1 + 1/2) = 4/3
    assert est.estimate_mbps() == pytest.approx(4 / 3)
    est.update(4.0)
    est.update(8.0)  # window keeps 2, 4, 8: 3 / (1/2 + 1/4 + 1/8) = 3 / 0.875
    assert est.estimate_mbps() == pytest.approx(3 / 0.875)
    assert isinstance(est, BandwidthEstimator)


def test_estimators_floor_outages_and_reject_bad_input():
    est = HarmonicEstimator(window=2)
    est.update(0.0)
    assert est.estimate_mbps() == pytest.approx(MIN_SAMPLE_MBPS)
    with pytest.raises(GraftInputError):
        est.update(float("nan"))
    with pytest.raises(GraftInputError):
        EwmaEstimator(alpha=0.0)
    with pytest.raises(GraftInputError):
        HarmonicEstimator(window=0)


@pytest.mark.parametrize("make", [lambda: EwmaEstimator(alpha=0.3),
                                  lambda: HarmonicEstimator(window=4)])
def test_track_equals_update_then_estimate(make):
    samples = [3.0, 0.0, 12.5, 7, 0.2, 9.0, 1e-4, 4.0, 5.5]
    one, many = make(), make()
    for est in (one, many):  # some history first: track carries on from it
        est.update(2.0)
        est.update(6.0)
    want = []
    for x in samples:
        one.update(x)
        want.append(one.estimate_mbps())
    assert many.track(samples).tolist() == want  # exactly, not approximately
    assert many.estimate_mbps() == one.estimate_mbps()
    assert make().track([]).size == 0


def test_track_rejects_what_update_rejects():
    for bad in ([1.0, float("nan")], [1.0, -2.0], [True, False], ["1"]):
        with pytest.raises(GraftInputError):
            EwmaEstimator().track(bad)


# ---------------------------------------------------------------- partition policies

def test_points_by_hand_at_1_mbps():
    # Upload at 1 Mbit/s: 8 * bytes / 1000 ms -> 32, 16, 4 ms for p = 0, 1, 2.
    # latency = head + up + server + down(1) + rtt(5): p0 0+32+12+6 = 50, p1 10+16+8+6 = 40,
    # p2 30+4+3+6 = 43. Budget at SLO 100: 100 - head - up - 6 -> 62, 68, 60.
    pts = evaluate_points(TOY, TOY_DEVICE, 1.0, 100.0, RTT, _server, downlink_mbps=DOWN)
    assert [c.partition for c in pts] == [0, 1, 2]  # p in 0..L-1, never L
    assert [c.upload_ms for c in pts] == pytest.approx([32, 16, 4])
    assert [c.download_ms for c in pts] == pytest.approx([1, 1, 1])
    assert [c.predicted_latency_ms for c in pts] == pytest.approx([50, 40, 43])
    assert [c.server_budget_ms for c in pts] == pytest.approx([62, 68, 60])
    # energy = 1 W * head + 0.1 W * upload: 3.2, 11.6, 30.4 mJ
    assert [c.energy_mj for c in pts] == pytest.approx([3.2, 11.6, 30.4])
    assert all(c.feasible for c in pts)


def test_neurosurgeon_picks_least_latency():
    c = _choose("neurosurgeon", 1.0, 100.0)  # 50, 40, 43 -> p1
    assert (c.partition, c.feasible) == (1, True)
    assert c.predicted_latency_ms == pytest.approx(40.0)
    assert c.device_ms == pytest.approx(10.0) and c.upload_ms == pytest.approx(16.0)


def test_neurosurgeon_high_bandwidth_offloads_everything():
    # 1000 Mbit/s: uploads ~0.03 ms; latency p0 ~18.03, p1 ~24.02, p2 ~39.00 -> p0.
    assert _choose("neurosurgeon", 1000.0, 100.0).partition == 0


def test_neurosurgeon_low_bandwidth_picks_late_point():
    # 0.1 Mbit/s: uploads 320, 160, 40 ms; latency p0 338, p1 184, p2 79 -> p2.
    c = _choose("neurosurgeon", 0.1, 500.0)
    assert c.partition == 2 and c.predicted_latency_ms == pytest.approx(79.0)


def test_energy_differs_from_neurosurgeon():
    # At 1 Mbit/s, SLO 100 all points are feasible; energy 3.2, 11.6, 30.4 mJ -> p0, while
    # latency 50, 40, 43 -> p1.
    assert _choose("energy", 1.0, 100.0).partition == 0
    assert _choose("neurosurgeon", 1.0, 100.0).partition == 1


def test_feasibility_rule_filters_points():
    # SLO 48 at 1 Mbit/s: budgets 48-38 = 10 < 12 (p0 out), 48-32 = 16 >= 8, 48-40 = 8 >= 3.
    # Energy among p1 (11.6 mJ) and p2 (30.4 mJ) -> p1.
    c = _choose("energy", 1.0, 48.0)
    assert (c.partition, c.feasible) == (1, True)
    assert c.server_budget_ms == pytest.approx(16.0)


def test_needed_budget_callable_is_separate():
    # SLO 100, 1 Mbit/s: budgets 62, 68, 60. Needs 24, 100, 6: p1 is out (68 < 100), so the
    # fastest feasible point is p2 (43 ms) instead of p1 (40 ms).
    need = {0: 24.0, 1: 100.0, 2: 6.0}
    c = _choose("neurosurgeon", 1.0, 100.0, needed_ms=lambda m, p: need[p])
    assert (c.partition, c.feasible) == (2, True)


@pytest.mark.parametrize("policy", ["neurosurgeon", "energy"])
def test_infeasible_falls_back_to_fastest(policy):
    # SLO 30 at 1 Mbit/s: budgets -8, -2, -10, all below need -> least latency p1 (40 ms).
    c = _choose(policy, 1.0, 30.0)
    assert (c.partition, c.feasible) == (1, False)
    assert c.predicted_latency_ms == pytest.approx(40.0)
    assert c.server_budget_ms == pytest.approx(-2.0)


def test_fixed_policy():
    c = _choose("fixed", 1.0, 100.0, partition=2)
    assert (c.partition, c.feasible) == (2, True)
    assert c.predicted_latency_ms == pytest.approx(43.0)
    assert not _choose("fixed", 1.0, 30.0, partition=2).feasible
    with pytest.raises(GraftInputError):
        _choose("fixed", 1.0, 100.0)
    with pytest.raises(GraftInputError):
        _choose("fixed", 1.0, 100.0, partition=3)  # the server must run at least block L-1


def test_unknown_policy_and_bad_inputs():
    assert set(POLICIES) == {"neurosurgeon", "energy", "fixed"}
    with pytest.raises(UnknownNameError) as e:
        _choose("oracle", 1.0, 100.0)
    assert e.value.kind == "partition policy"
    for bw in (0.0, -1.0, float("inf")):
        with pytest.raises(GraftInputError):
            _choose("neurosurgeon", bw, 100.0)
    with pytest.raises(GraftInputError):
        _choose("neurosurgeon", 1.0, float("nan"))


def test_real_models_with_server_needed_budget():
    cost = make_cost_model("analytic:v100")

    def need(m: str, p: int) -> float:
        return needed_budget_ms(cost, m, p)

    # A slow board on a fast link offloads everything.
    rpi = get_device("rpi")
    c = choose_partition("neurosurgeon", "mobilenet_v2", rpi, 1000, 1000, 10, need)
    assert c.partition == 0
    # A phone on a 1 Mbit/s uplink keeps most of MobileNetV2 (its late activations are small).
    npu = get_device("phone-npu")
    c = choose_partition("neurosurgeon", "mobilenet_v2", npu, 1.0, 1000, 10, need)
    assert c.feasible and c.partition >= get_model("mobilenet_v2").num_blocks // 2


# A device that spends no energy: the energy policy ties everywhere and falls to latency.
FREE = DeviceModel(name="free", peak_flops=1e12, efficiency=0.5, mem_bandwidth=5e10,
                   kernel_overhead_s=2e-5, active_w=0.0, tx_w=0.0, idle_w=0.0)
BANDWIDTHS = [0.05, 0.3, 1.0, 1.7, 2.5, 4.0, 9.0, 40.0, 300.0]


@pytest.mark.parametrize("model, device, slo", [
    (TOY, TOY_DEVICE, 30.0), (TOY, TOY_DEVICE, 48.0), (TOY, TOY_DEVICE, 100.0),
    ("mobilenet_v2", get_device("phone-npu"), 200.0), ("resnet50", get_device("rpi"), 400.0),
    ("resnet50", FREE, 300.0),
])
@pytest.mark.parametrize("policy", ["neurosurgeon", "energy", "fixed"])
@pytest.mark.parametrize("sizes", [{}, {"activation_bytes_per_value": 1.0, "input_bytes": 900}])
def test_choose_partitions_equals_choose_partition(model, device, slo, policy, sizes):
    cost = make_cost_model("analytic:v100")
    if model is TOY:
        server, down = _server, DOWN
    else:
        def server(m: str, p: int) -> float:
            return needed_budget_ms(cost, m, p)
        down = 50.0
    kw = dict(partition=1 if policy == "fixed" else None, downlink_mbps=down, **sizes)
    got = choose_partitions(policy, model, device, BANDWIDTHS, slo, RTT, server, **kw)
    want = [choose_partition(policy, model, device, bw, slo, RTT, server, **kw).partition
            for bw in BANDWIDTHS]
    assert got.tolist() == want


def test_energy_with_free_device_is_neurosurgeon():
    cost = make_cost_model("analytic:v100")

    def need(m: str, p: int) -> float:
        return needed_budget_ms(cost, m, p)

    args = ("resnet50", FREE, BANDWIDTHS, 300.0, RTT, need)
    assert choose_partitions("energy", *args).tolist() == \
        choose_partitions("neurosurgeon", *args).tolist()


def test_choose_partitions_rejects_bad_bandwidths():
    for bad in ([1.0, 0.0], [float("nan")], [[1.0]]):
        with pytest.raises(GraftInputError):
            choose_partitions("neurosurgeon", TOY, TOY_DEVICE, bad, 100.0, RTT, _server)


@pytest.mark.parametrize("sizes", [{}, {"activation_bytes_per_value": 1.0},
                                   {"input_bytes": 1000.5},
                                   {"activation_bytes_per_value": 2.5, "input_bytes": 7}])
def test_upload_bytes_all_equals_upload_bytes(sizes):
    for spec in (TOY, get_model("resnet50"), get_model("vit_b_16")):
        got = upload_bytes_all(spec, **sizes)
        assert got.dtype == np.int64
        assert got.tolist() == [upload_bytes(spec, p, **sizes) for p in range(spec.num_blocks)]
