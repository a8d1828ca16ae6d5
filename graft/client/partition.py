"""How a client picks its partition point, and the server budget its request carries.

For every candidate point ``p`` in ``0..L-1`` (the server runs at least the last block, as in
the workload format) a client predicts

    device_ms   = device.head_ms(model, p)                       blocks [0, p) on the device
    upload_ms   = 8 * upload_bytes(p) / (bandwidth_mbps * 1e3)   at the estimated uplink
    download_ms = 8 * result_bytes / (downlink_mbps * 1e3)       result = last block's out_bytes
    budget_ms   = slo_ms - device_ms - upload_ms - download_ms - rtt_ms
    latency_ms  = device_ms + upload_ms + server_ms(model, p) + download_ms + rtt_ms
    energy_mj   = device.active_w * device_ms + device.tx_w * upload_ms

``upload_bytes(p)`` (``upload_bytes``) is what the client sends at ``p``: for ``p > 0`` the
activation ``in_bytes(p)`` (fp32 in the block table) scaled to ``activation_bytes_per_value``
bytes a value (4 = fp32, the default; 1 = int8-quantised activations); for ``p = 0``
``input_bytes`` when given (e.g. a JPEG of the frame), else the raw fp32 input tensor.

A point is *feasible* when ``budget_ms >= needed_ms(model, p)``: the server can meet the
request's budget at all. ``server_ms`` (the server's predicted time) and ``needed_ms`` (the least
budget the server needs) are callables the caller passes, e.g.
``lambda m, p: needed_budget_ms(cost, m, p)`` for both; ``needed_ms`` defaults to ``server_ms``.

Policies (``POLICIES``): ``neurosurgeon`` (least predicted latency among feasible points),
``energy`` (least device energy among feasible points, ties by latency) and ``fixed`` (always the
given point). When no point is feasible, ``neurosurgeon`` and ``energy`` return the point of least
predicted latency with ``feasible=False``; the simulator counts such requests as misses.

``choose_partitions`` picks at many bandwidths at once: the predictions are ``(bandwidths x
points)`` arrays and each policy picks per row; ``choose_partition`` is its one-row case.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from graft.client.devices import DeviceModel
from graft.errors import GraftInputError, UnknownNameError
from graft.models.catalog import get_model
from graft.models.spec import ModelSpec

logger = logging.getLogger(__name__)

#: Downlink rate the result comes back at unless the caller says otherwise, Mbit/s.
DEFAULT_DOWNLINK_MBPS = 50.0

#: Bytes per value of the activations in the block table (``out_bytes`` are fp32).
FP32_BYTES = 4.0

#: Relative slack on the feasibility test, so a budget equal to the need up to rounding passes.
_EPS = 1e-9

ServerFn = Callable[[str, int], float]


@dataclass(frozen=True)
class Choice:
    """One partition point and what the client predicts for it."""

    partition: int
    predicted_latency_ms: float
    server_budget_ms: float
    feasible: bool
    device_ms: float
    upload_ms: float
    download_ms: float = 0.0
    server_ms: float = 0.0
    energy_mj: float = 0.0


def result_bytes(spec: ModelSpec) -> int:
    """Bytes the server sends back per request: the last block's output."""
    return spec.blocks[-1].out_bytes


def transfer_ms(nbytes: float, mbps: float) -> float:
    """Time to move ``nbytes`` at a constant ``mbps`` Mbit/s, ms."""
    return 8.0 * nbytes / (mbps * 1e3)


def upload_bytes(spec: ModelSpec, p: int, *, activation_bytes_per_value: float = FP32_BYTES,
                 input_bytes: float | None = None) -> int:
    """Bytes a client uploads at point ``p``: ``input_bytes`` (default the fp32 input tensor)
    at ``p = 0``, else ``in_bytes(p)`` scaled from fp32 to ``activation_bytes_per_value``
    (rounded up to whole bytes)."""
    if p == 0:
        return spec.input_bytes if input_bytes is None else math.ceil(input_bytes)
    if activation_bytes_per_value == FP32_BYTES:
        return spec.in_bytes(p)
    return math.ceil(spec.in_bytes(p) * (activation_bytes_per_value / FP32_BYTES))


def _check_positive(what: str, v: float, *, allow_zero: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise GraftInputError(f"{what} must be finite and {bound}, got {v!r}", field=what)


@dataclass(frozen=True)
class _Points:
    """Every candidate point's predictions at each of ``n`` bandwidths: ``(n, L)`` arrays,
    row ``i`` for bandwidth ``i``, column ``p`` for point ``p = 0..L-1`` (``head`` and
    ``server`` do not depend on the bandwidth: one ``(L,)`` row)."""

    head: np.ndarray
    upload: np.ndarray
    download: float
    budget: np.ndarray
    latency: np.ndarray
    server: np.ndarray
    feasible: np.ndarray
    energy: np.ndarray

    def choice(self, row: int, p: int) -> Choice:
        """Point ``p``'s predictions at bandwidth ``row``."""
        return Choice(
            partition=p,
            predicted_latency_ms=float(self.latency[row, p]),
            server_budget_ms=float(self.budget[row, p]),
            feasible=bool(self.feasible[row, p]),
            device_ms=float(self.head[p]),
            upload_ms=float(self.upload[row, p]),
            download_ms=self.download,
            server_ms=float(self.server[p]),
            energy_mj=float(self.energy[row, p]),
        )


_IN_BYTES: dict[str, tuple[ModelSpec, np.ndarray]] = {}


def _in_bytes(spec: ModelSpec) -> np.ndarray:
    """Bytes uploaded at each point ``p = 0..L-1`` (int64, read-only), cached per model
    (checked by identity)."""
    hit = _IN_BYTES.get(spec.name)
    if hit is None or hit[0] is not spec:
        raw = np.array([spec.in_bytes(p) for p in range(spec.num_blocks)], dtype=np.int64)
        raw.setflags(write=False)
        hit = (spec, raw)
        _IN_BYTES[spec.name] = hit
    return hit[1]


def upload_bytes_all(spec: ModelSpec, *, activation_bytes_per_value: float = FP32_BYTES,
                     input_bytes: float | None = None) -> np.ndarray:
    """``upload_bytes`` at every point ``p = 0..L-1`` (int64, not to be written to)."""
    raw = _in_bytes(spec)
    if activation_bytes_per_value == FP32_BYTES and input_bytes is None:
        return raw
    out = np.ceil(raw * (activation_bytes_per_value / FP32_BYTES)).astype(np.int64)
    out[0] = spec.input_bytes if input_bytes is None else math.ceil(input_bytes)
    return out


def check_upload_sizes(activation_bytes_per_value: float, input_bytes: float | None) -> None:
    """``GraftInputError`` unless ``activation_bytes_per_value`` > 0 and ``input_bytes`` is
    None or > 0 (both finite)."""
    _check_positive("activation_bytes_per_value", activation_bytes_per_value)
    if input_bytes is not None:
        _check_positive("input_bytes", input_bytes)


def _check_bandwidths(bandwidths_mbps: npt.ArrayLike) -> np.ndarray:
    """The bandwidths as a 1-d float array; ``GraftInputError`` unless all are finite and
    > 0."""
    bw = np.asarray(bandwidths_mbps, dtype=float)
    if bw.ndim != 1:
        raise GraftInputError(f"bandwidths_mbps must be 1-d, got shape {bw.shape}",
                              field="bandwidth_mbps")
    bad = ~(np.isfinite(bw) & (bw > 0))
    if bad.any():
        raise GraftInputError(f"bandwidth_mbps must be finite and > 0, got {bw[bad][0]!r}",
                              field="bandwidth_mbps")
    return bw


def _points(
    model: str | ModelSpec,
    device: DeviceModel,
    bandwidths_mbps: np.ndarray,
    slo_ms: float,
    rtt_ms: float,
    server_ms: ServerFn,
    needed_ms: ServerFn | None,
    downlink_mbps: float,
    activation_bytes_per_value: float = FP32_BYTES,
    input_bytes: float | None = None,
) -> _Points:
    """Predictions at each of the (checked) ``bandwidths_mbps``."""
    check_upload_sizes(activation_bytes_per_value, input_bytes)
    _check_positive("slo_ms", slo_ms)
    _check_positive("rtt_ms", rtt_ms, allow_zero=True)
    _check_positive("downlink_mbps", downlink_mbps)
    spec = model if isinstance(model, ModelSpec) else get_model(model)
    need_fn = server_ms if needed_ms is None else needed_ms
    points = range(spec.num_blocks)
    down = transfer_ms(result_bytes(spec), downlink_mbps)
    head = np.asarray(device.head_ms_all(spec)[: spec.num_blocks])
    sent = upload_bytes_all(spec, activation_bytes_per_value=activation_bytes_per_value,
                            input_bytes=input_bytes)
    up = 8.0 * sent / (bandwidths_mbps[:, None] * 1e3)
    budget = slo_ms - head - up - down - rtt_ms
    server = np.array([float(server_ms(spec.name, p)) for p in points])
    need = server if need_fn is server_ms else np.array(
        [float(need_fn(spec.name, p)) for p in points])
    return _Points(head=head, upload=up, download=down, budget=budget,
                   latency=head + up + server + down + rtt_ms, server=server,
                   feasible=budget >= need * (1 - _EPS),
                   energy=device.active_w * head + device.tx_w * up)


def evaluate_points(
    model: str | ModelSpec,
    device: DeviceModel,
    bandwidth_mbps: float,
    slo_ms: float,
    rtt_ms: float,
    server_ms: ServerFn,
    *,
    needed_ms: ServerFn | None = None,
    downlink_mbps: float = DEFAULT_DOWNLINK_MBPS,
    activation_bytes_per_value: float = FP32_BYTES,
    input_bytes: float | None = None,
) -> tuple[Choice, ...]:
    """The prediction for every point ``p`` in ``0..L-1``, in order of ``p``."""
    _check_positive("bandwidth_mbps", bandwidth_mbps)
    pts = _points(model, device, np.array([bandwidth_mbps], dtype=float), slo_ms, rtt_ms,
                  server_ms, needed_ms, downlink_mbps, activation_bytes_per_value, input_bytes)
    return tuple(pts.choice(0, p) for p in range(len(pts.head)))


def _fastest(pts: _Points, among: np.ndarray) -> np.ndarray:
    """Per row, the point of least predicted latency among ``among`` (ties: the smaller p)."""
    return np.argmin(np.where(among, pts.latency, np.inf), axis=1)


def _no_feasible(pts: _Points) -> np.ndarray:
    """``(n, 1)``: whether row ``i`` has no feasible point."""
    return ~pts.feasible.any(axis=1, keepdims=True)


def _neurosurgeon(pts: _Points, fixed: int | None) -> np.ndarray:
    """Least latency among feasible points; a row with none: least latency of all."""
    return _fastest(pts, pts.feasible | _no_feasible(pts))


def _energy(pts: _Points, fixed: int | None) -> np.ndarray:
    """Least energy among feasible points, then least latency, then the smaller p; a row
    with no feasible point: least latency of all."""
    least = np.where(pts.feasible, pts.energy, np.inf).min(axis=1, keepdims=True)
    cheapest = pts.feasible & (pts.energy == least)
    return _fastest(pts, cheapest | _no_feasible(pts))


def _fixed(pts: _Points, fixed: int | None) -> np.ndarray:
    """``fixed`` in every row."""
    if fixed is None or isinstance(fixed, bool) or not isinstance(fixed, int):
        raise GraftInputError(f"policy 'fixed' needs an integer partition, got {fixed!r}",
                              field="partition")
    if not 0 <= fixed < len(pts.head):
        raise GraftInputError(
            f"partition must be in 0..{len(pts.head) - 1}, got {fixed}", field="partition"
        )
    return np.full(len(pts.upload), fixed)


#: A policy: the point it picks in each row of the predictions (the ``fixed`` point given).
Policy = Callable[[_Points, int | None], np.ndarray]

#: Partition policies by name.
POLICIES: dict[str, Policy] = {
    "neurosurgeon": _neurosurgeon,
    "energy": _energy,
    "fixed": _fixed,
}


def get_policy(name: str) -> Policy:
    try:
        return POLICIES[name]
    except KeyError:
        raise UnknownNameError("partition policy", name, list(POLICIES)) from None


def choose_partition(
    policy: str,
    model: str | ModelSpec,
    device: DeviceModel,
    bandwidth_mbps: float,
    slo_ms: float,
    rtt_ms: float,
    server_ms: ServerFn,
    *,
    needed_ms: ServerFn | None = None,
    partition: int | None = None,
    downlink_mbps: float = DEFAULT_DOWNLINK_MBPS,
    activation_bytes_per_value: float = FP32_BYTES,
    input_bytes: float | None = None,
) -> Choice:
    """The point ``policy`` picks; ``partition`` is the point of the ``fixed`` policy.
    ``activation_bytes_per_value`` and ``input_bytes`` size the upload (``upload_bytes``)."""
    _check_positive("bandwidth_mbps", bandwidth_mbps)
    pick = get_policy(policy)
    pts = _points(model, device, np.array([bandwidth_mbps], dtype=float), slo_ms, rtt_ms,
                  server_ms, needed_ms, downlink_mbps, activation_bytes_per_value, input_bytes)
    choice = pts.choice(0, int(pick(pts, partition)[0]))
    if not choice.feasible:
        logger.debug(
            "%s on %s: no feasible point at %.3f Mbit/s, SLO %.1f ms; p=%d predicts %.1f ms",
            policy, device.name, bandwidth_mbps, slo_ms, choice.partition,
            choice.predicted_latency_ms,
        )
    return choice


def choose_partitions(
    policy: str,
    model: str | ModelSpec,
    device: DeviceModel,
    bandwidths_mbps: npt.ArrayLike,
    slo_ms: float,
    rtt_ms: float,
    server_ms: ServerFn,
    *,
    needed_ms: ServerFn | None = None,
    partition: int | None = None,
    downlink_mbps: float = DEFAULT_DOWNLINK_MBPS,
    activation_bytes_per_value: float = FP32_BYTES,
    input_bytes: float | None = None,
) -> np.ndarray:
    """``choose_partition(...).partition`` at each bandwidth of ``bandwidths_mbps`` (1-d), as
    an int array, from one pass over all the predictions."""
    bw = _check_bandwidths(bandwidths_mbps)
    pick = get_policy(policy)
    pts = _points(model, device, bw, slo_ms, rtt_ms, server_ms, needed_ms, downlink_mbps,
                  activation_bytes_per_value, input_bytes)
    chosen = pick(pts, partition)
    infeasible = int(np.count_nonzero(~pts.feasible[np.arange(bw.size), chosen]))
    if infeasible:
        logger.debug("%s on %s: no feasible point at %d of %d bandwidths (SLO %.1f ms)",
                     policy, device.name, infeasible, bw.size, slo_ms)
    return chosen
