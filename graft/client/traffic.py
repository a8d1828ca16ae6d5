"""Clients on bandwidth traces producing server arrivals (see ``docs/clients.md``).

``generate_requests``: each client sends requests at its rate (Poisson, or fixed intervals
from a seeded phase) over ``duration_s``. At send time ``t`` it

1. feeds its estimator the throughput its trace gave over the last second,
   ``trace.rate_mbps(t, 1000)`` (a passive probe: the sample does not depend on the client's
   own uploads, so clients that send rarely still track the link);
2. picks ``p`` with its policy (``choose_partition``; the server's predicted time and needed
   budget are both ``needed_budget_ms(cost, model, p)``);
3. runs the head, ``head = device.head_ms(model, p)``;
4. uploads ``upload_bytes(p)`` (the activation at ``activation_bytes_per_value`` bytes a value,
   or ``input_bytes`` at ``p = 0``; the same bytes the partition choice predicted with) by
   walking its trace from ``t + head`` (``upload = trace.transfer_ms(upload_bytes(p), t + head)``);
5. reaches the server at ``t + head + upload + rtt / 2`` with
   ``budget = slo - head - upload - download - rtt``,
   ``download = 8 * out_bytes(last block) / (downlink_mbps * 1e3)``.

A client's uploads do not share its link with each other (each walks the whole trace).
Each step runs for all of a client's send times at once (``rate_mbps_many``, the estimator's
``track``, ``choose_partitions``, ``transfer_ms_many``) and gives exactly the numbers of the
per-request calls above.

What the server makes of these requests (the flows it plans for, routing with admission
control) is in ``graft.serving``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields

import numpy as np

from graft.client.devices import get_device
from graft.client.estimator import BandwidthEstimator, EwmaEstimator, HarmonicEstimator
from graft.client.partition import (
    DEFAULT_DOWNLINK_MBPS,
    FP32_BYTES,
    check_upload_sizes,
    choose_partitions,
    result_bytes,
    transfer_ms,
    upload_bytes_all,
)
from graft.cost.base import CostModel
from graft.models.catalog import get_model
from graft.plan.rules import needed_budget_ms
from graft.workload.arrivals import times_at_rate_ms
from graft.workload.traces import BandwidthTrace

log = logging.getLogger(__name__)

#: Estimators by name.
ESTIMATORS: dict[str, Callable[[], BandwidthEstimator]] = {
    "ewma": EwmaEstimator,
    "harmonic": HarmonicEstimator,
}

#: Window of the trace throughput a client samples before each request, ms.
SAMPLE_WINDOW_MS = 1000.0


#: A client's defaults, shared by ``ClientSpec`` and the scenario format.
DEFAULT_ARRIVALS = "poisson"
DEFAULT_POLICY = "neurosurgeon"
DEFAULT_RTT_MS = 20.0
DEFAULT_ESTIMATOR = "ewma"


@dataclass(frozen=True)
class ClientSpec:
    """One client: its model, device, SLO, request rate, link and partition policy."""

    id: str
    model: str
    device: str
    slo_ms: float
    rate: float
    trace: BandwidthTrace = field(compare=False)
    arrivals: str = DEFAULT_ARRIVALS
    policy: str = DEFAULT_POLICY
    #: The point of the ``fixed`` policy.
    partition: int | None = None
    rtt_ms: float = DEFAULT_RTT_MS
    downlink_mbps: float = DEFAULT_DOWNLINK_MBPS
    estimator: str = DEFAULT_ESTIMATOR
    #: Bytes a value of the uploaded activation (p > 0): 4 = fp32, 1 = int8-quantised.
    activation_bytes_per_value: float = FP32_BYTES
    #: Bytes uploaded at p = 0 (e.g. a JPEG of the frame); None = the raw fp32 input tensor.
    input_bytes: float | None = None

    def __post_init__(self) -> None:
        check_upload_sizes(self.activation_bytes_per_value, self.input_bytes)


@dataclass(frozen=True)
class ClientRequest:
    """One request of one client, from send time to server arrival (ms)."""

    client: str
    model: str
    partition: int
    send_ms: float
    arrival_ms: float
    #: Server budget: slo - head - upload - download - rtt.
    budget_ms: float
    head_ms: float
    upload_ms: float
    estimate_mbps: float

    @property
    def viable(self) -> bool:
        """Whether the request can still make its SLO at all (budget > 0)."""
        return self.budget_ms > 0


#: ``ClientRequest``'s fields after ``client`` and ``model``, in order: the per-request arrays.
_COLUMNS = tuple(f.name for f in fields(ClientRequest))[2:]


def _make_estimator(name: str) -> BandwidthEstimator:
    """A fresh estimator of the kind named (``ESTIMATORS``); ValueError for others."""
    try:
        return ESTIMATORS[name]()
    except KeyError:
        raise ValueError(f"estimator must be one of {list(ESTIMATORS)}, got {name!r}") from None


def _client_columns(c: ClientSpec, need: Callable[[str, int], float], duration_s: float,
                    rng: np.random.Generator) -> dict[str, np.ndarray] | None:
    """The client's requests as one array per field of ``_COLUMNS``, in send order (steps
    1-5 of the module docstring, each for all its send times at once); None when it sends
    nothing."""
    spec = get_model(c.model)
    device = get_device(c.device)
    est = _make_estimator(c.estimator)
    download = transfer_ms(result_bytes(spec), c.downlink_mbps)
    send = times_at_rate_ms(c.rate, duration_s, rng, c.arrivals)
    if not send.size:
        return None
    bw = est.track(c.trace.rate_mbps_many(send, SAMPLE_WINDOW_MS))
    p = choose_partitions(c.policy, spec, device, bw, c.slo_ms, c.rtt_ms, need,
                          partition=c.partition, downlink_mbps=c.downlink_mbps,
                          activation_bytes_per_value=c.activation_bytes_per_value,
                          input_bytes=c.input_bytes)
    head = np.asarray(device.head_ms_all(spec))[p]
    sent = upload_bytes_all(spec, activation_bytes_per_value=c.activation_bytes_per_value,
                            input_bytes=c.input_bytes)[p]
    upload = c.trace.transfer_ms_many(sent, send + head)
    return {"partition": p, "send_ms": send,
            "arrival_ms": send + head + upload + c.rtt_ms / 2.0,
            "budget_ms": c.slo_ms - head - upload - download - c.rtt_ms,
            "head_ms": head, "upload_ms": upload, "estimate_mbps": bw}


def _requests(clients: Sequence[ClientSpec], owner: np.ndarray,
              columns: dict[str, np.ndarray]) -> list[ClientRequest]:
    """One ``ClientRequest`` per entry: client ``owner[i]``, fields from ``columns``."""
    ids = [c.id for c in clients]
    models = [c.model for c in clients]
    rows = zip(owner.tolist(), *(columns[f].tolist() for f in _COLUMNS), strict=True)
    return [ClientRequest(ids[k], models[k], *values) for k, *values in rows]


def generate_requests(clients: Sequence[ClientSpec], cost: CostModel, *, duration_s: float,
                      seed: int = 0) -> list[ClientRequest]:
    """Every client's requests over ``duration_s``, ordered by server arrival (ties by client
    order, then send time); deterministic for a seed (client ``i`` draws from child ``i`` of
    ``SeedSequence(seed)``)."""
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s!r}")
    ids = [c.id for c in clients]
    if len(set(ids)) != len(ids):
        raise ValueError("client ids must be unique")
    def need(model: str, p: int) -> float:
        return needed_budget_ms(cost, model, p)

    seqs = np.random.SeedSequence(seed).spawn(len(clients))
    parts, owners = [], []
    for k, (c, sq) in enumerate(zip(clients, seqs, strict=True)):
        cols = _client_columns(c, need, duration_s, np.random.default_rng(sq))
        n = 0 if cols is None else cols["send_ms"].size
        log.debug("client %s: %d requests", c.id, n)
        if cols is not None:
            parts.append(cols)
            owners.append(np.full(n, k))
    if not parts:
        return []
    columns = {f: np.concatenate([cols[f] for cols in parts]) for f in _COLUMNS}
    owner = np.concatenate(owners)
    order = np.lexsort((columns["send_ms"], owner, columns["arrival_ms"]))
    return _requests(clients, owner[order], {f: v[order] for f, v in columns.items()})


