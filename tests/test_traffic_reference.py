"""``generate_requests`` against a deliberately simple scalar reference of one request.

The reference is the per-request loop as the client model defines it (``graft/client/
traffic.py``): at each send time update the estimator from ``trace.rate_mbps``, predict
every point in plain Python floats and let the policy pick, then walk the trace with the
scalar ``transfer_ms``. It computes the same float operations in the same order as the
library, so every field of every request must be equal, not just close. The clients cover
every trace kind (Mahimahi, rate CSV and iperf files written here, the synthetic generator,
an in-memory trace with outages that is shorter than the run), every policy, both
estimators, both arrival processes and the upload-size options.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from graft.client.devices import get_device
from graft.client.partition import FP32_BYTES, result_bytes, transfer_ms, upload_bytes
from graft.client.traffic import (
    ESTIMATORS,
    SAMPLE_WINDOW_MS,
    ClientRequest,
    ClientSpec,
    generate_requests,
)
from graft.cost.registry import make_cost_model
from graft.models.catalog import get_model
from graft.plan.rules import needed_budget_ms
from graft.workload.arrivals import times_at_rate_ms
from graft.workload.tracegen import markov_trace, write_mahimahi, write_rate_csv
from graft.workload.traces import (
    BandwidthTrace,
    RateTrace,
    read_iperf_csv,
    read_mahimahi,
    read_rate_csv,
)

V100 = make_cost_model("analytic:v100")
DURATION_S = 20.0
#: The feasibility slack of ``graft.client.partition``.
EPS = 1e-9


# ------------------------------------------------------------------------- the reference


def _predict(c: ClientSpec, bw: float, p: int) -> tuple[float, float, float, bool]:
    """(latency, energy, budget, feasible) of point ``p`` at estimate ``bw``."""
    spec, dev = get_model(c.model), get_device(c.device)
    head = dev.head_ms(spec, p)
    sent = upload_bytes(spec, p, activation_bytes_per_value=c.activation_bytes_per_value,
                        input_bytes=c.input_bytes)
    up = 8.0 * sent / (bw * 1e3)
    down = transfer_ms(result_bytes(spec), c.downlink_mbps)
    need = needed_budget_ms(V100, c.model, p)
    budget = c.slo_ms - head - up - down - c.rtt_ms
    latency = head + up + need + down + c.rtt_ms
    energy = dev.active_w * head + dev.tx_w * up
    return latency, energy, budget, budget >= need * (1 - EPS)


def _pick(c: ClientSpec, bw: float) -> int:
    """The policy's point: least latency (neurosurgeon) or energy, then latency (energy),
    among feasible points, else the least latency of all; ties go to the smaller p."""
    if c.policy == "fixed":
        return c.partition
    preds = [_predict(c, bw, p) for p in range(get_model(c.model).num_blocks)]
    feasible = [p for p, x in enumerate(preds) if x[3]]
    if not feasible:
        return min(range(len(preds)), key=lambda p: (preds[p][0], p))
    if c.policy == "neurosurgeon":
        return min(feasible, key=lambda p: (preds[p][0], p))
    return min(feasible, key=lambda p: (preds[p][1], preds[p][0], p))


def _reference_client(c: ClientSpec, rng: np.random.Generator) -> list[ClientRequest]:
    spec, dev = get_model(c.model), get_device(c.device)
    est = ESTIMATORS[c.estimator]()
    download = transfer_ms(result_bytes(spec), c.downlink_mbps)
    out = []
    for t in times_at_rate_ms(c.rate, DURATION_S, rng, c.arrivals):
        send = float(t)
        est.update(c.trace.rate_mbps(send, SAMPLE_WINDOW_MS))
        bw = est.estimate_mbps()
        p = _pick(c, bw)
        head = dev.head_ms(spec, p)
        sent = upload_bytes(spec, p, activation_bytes_per_value=c.activation_bytes_per_value,
                            input_bytes=c.input_bytes)
        upload = c.trace.transfer_ms(sent, send + head)
        out.append(ClientRequest(
            client=c.id, model=c.model, partition=p, send_ms=send,
            arrival_ms=send + head + upload + c.rtt_ms / 2.0,
            budget_ms=c.slo_ms - head - upload - download - c.rtt_ms,
            head_ms=head, upload_ms=upload, estimate_mbps=bw))
    return out


def reference_requests(clients: list[ClientSpec], seed: int) -> list[ClientRequest]:
    """``generate_requests`` one request at a time (same seeding and order)."""
    seqs = np.random.SeedSequence(seed).spawn(len(clients))
    keyed = []
    for k, (c, sq) in enumerate(zip(clients, seqs, strict=True)):
        keyed += [(r.arrival_ms, k, r.send_ms, r)
                  for r in _reference_client(c, np.random.default_rng(sq))]
    keyed.sort(key=lambda x: x[:3])
    return [x[3] for x in keyed]


# ---------------------------------------------------------------------------- the traces


def _iperf_file(path: Path, trace: RateTrace) -> Path:
    """Per-second ``value,unit`` rows of ``trace``'s rates, the unit cycling row by row."""
    units = (("Mbits/sec", 1.0), ("Kbits/sec", 1e3), ("bits/sec", 1e6))
    rows = ["Value,Unit"] + [f"{r * f!r},{u}" for r, (u, f) in
                             zip(trace.rates_mbps.tolist(), itertools.cycle(units))]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _outage_trace() -> RateTrace:
    """7.5 s (shorter than the run, so it wraps) with two zero-rate outages."""
    return RateTrace([0.0, 1000.0, 2500.0, 3000.0, 4200.0, 6000.0, 7500.0],
                     [3.0, 0.0, 12.0, 0.5, 0.0, 1.7], name="outages")


@pytest.fixture(scope="module")
def traces(tmp_path_factory: pytest.TempPathFactory) -> dict[str, BandwidthTrace]:
    d = tmp_path_factory.mktemp("traces")
    write_mahimahi(markov_trace(30.0, seed=3), d / "lte.up")
    write_rate_csv(markov_trace(40.0, seed=4), d / "rate.csv")
    return {
        "mahimahi": read_mahimahi(d / "lte.up"),
        "rate-csv": read_rate_csv(d / "rate.csv"),
        "iperf": read_iperf_csv(_iperf_file(d / "iperf.csv", markov_trace(25.0, seed=5))),
        "synthetic": markov_trace(60.0, seed=6),
        "outages": _outage_trace(),
    }


#: (model, device, slo_ms, rate, policy, partition, estimator, arrivals, bytes/value, input)
CONFIGS = [
    ("resnet50", "phone-npu", 300.0, 5.0, "neurosurgeon", None, "ewma", "poisson", 1.0, 25088),
    ("resnet50", "jetson", 300.0, 4.0, "energy", None, "harmonic", "fixed", FP32_BYTES, None),
    ("mobilenet_v2", "jetson", 300.0, 5.0, "energy", None, "ewma", "poisson", 1.0, 25088),
    ("mobilenet_v2", "rpi", 300.0, 5.0, "energy", None, "harmonic", "fixed", 1.0, None),
    ("mobilenet_v2", "rpi", 150.0, 6.0, "neurosurgeon", None, "harmonic", "poisson", 1.0,
     25088),
    ("mobilenet_v2", "phone-cpu", 200.0, 6.0, "neurosurgeon", None, "ewma", "fixed", 2.0, None),
    ("vit_b_16", "phone-npu", 500.0, 5.0, "fixed", 4, "ewma", "poisson", 1.0, 25088),
    ("tiny", "jetson", 60.0, 8.0, "neurosurgeon", None, "ewma", "fixed", FP32_BYTES, None),
    ("tiny", "rpi", 80.0, 5.0, "fixed", 0, "harmonic", "poisson", 1.0, 700.5),
]


def _clients(traces: dict[str, BandwidthTrace]) -> list[ClientSpec]:
    out = []
    for i, (cfg, kind) in enumerate(itertools.product(CONFIGS, sorted(traces))):
        model, dev, slo, rate, policy, p, est, arr, bpv, inp = cfg
        out.append(ClientSpec(id=f"c{i}-{kind}", model=model, device=dev, slo_ms=slo,
                              rate=rate, trace=traces[kind], arrivals=arr, policy=policy,
                              partition=p, rtt_ms=20.0 + i % 3 * 10.0, estimator=est,
                              activation_bytes_per_value=bpv, input_bytes=inp))
    return out


# -------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("seed", [0, 11])
def test_generate_requests_equals_the_scalar_reference(traces, seed):
    clients = _clients(traces)
    got = generate_requests(clients, V100, duration_s=DURATION_S, seed=seed)
    want = reference_requests(clients, seed)
    assert len(got) == len(want) > 1000
    assert got == want  # every field, exactly
    # the set exercises what it claims to: several points, infeasible and viable requests
    assert len({(r.model, r.partition) for r in got}) >= 10
    assert any(not r.viable for r in got) and any(r.viable for r in got)
