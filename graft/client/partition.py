"""How a client picks its partition point, and the server budget its request carries.

For every candidate point ``p`` in ``0..L-1`` (the server runs at least the last block, as in
the workload format) a client predicts

    device_ms   = device.head_ms(model, p)                       blocks [0, p) on the device
    upload_ms   = 8 * in_bytes(p) / (bandwidth_mbps * 1e3)       at the estimated uplink
    download_ms = 8 * result_bytes / (downlink_mbps * 1e3)       result = last block's out_bytes
    budget_ms   = slo_ms - device_ms - upload_ms - download_ms - rtt_ms
    latency_ms  = device_ms + upload_ms + server_ms(model, p) + download_ms + rtt_ms
    energy_mj   = device.active_w * device_ms + device.tx_w * upload_ms

A point is *feasible* when ``budget_ms >= needed_ms(model, p)``: the server can meet the
request's budget at all. ``server_ms`` (the server's predicted time) and ``needed_ms`` (the least
budget the server needs) are callables the caller passes, e.g.
``lambda m, p: needed_budget_ms(cost, m, p)`` for both; ``needed_ms`` defaults to ``server_ms``.

Policies (``POLICIES``): ``neurosurgeon`` (least predicted latency among feasible points),
``energy`` (least device energy among feasible points, ties by latency) and ``fixed`` (always the
given point). When no point is feasible, ``neurosurgeon`` and ``energy`` return the point of least
predicted latency with ``feasible=False``; the simulator counts such requests as misses.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from graft.client.devices import DeviceModel
from graft.errors import GraftInputError, UnknownNameError
from graft.models.catalog import get_model
from graft.models.spec import ModelSpec

logger = logging.getLogger(__name__)

#: Downlink rate the result comes back at unless the caller says otherwise, Mbit/s.
DEFAULT_DOWNLINK_MBPS = 50.0

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


def _check_positive(what: str, v: float, *, allow_zero: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise GraftInputError(f"{what} must be finite and {bound}, got {v!r}", field=what)


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
) -> tuple[Choice, ...]:
    """The prediction for every point ``p`` in ``0..L-1``, in order of ``p``."""
    _check_positive("bandwidth_mbps", bandwidth_mbps)
    _check_positive("slo_ms", slo_ms)
    _check_positive("rtt_ms", rtt_ms, allow_zero=True)
    _check_positive("downlink_mbps", downlink_mbps)
    spec = model if isinstance(model, ModelSpec) else get_model(model)
    need_fn = server_ms if needed_ms is None else needed_ms
    down = transfer_ms(result_bytes(spec), downlink_mbps)
    heads = device.head_ms_all(spec)
    out = []
    for p in range(spec.num_blocks):
        head = heads[p]
        up = transfer_ms(spec.in_bytes(p), bandwidth_mbps)
        budget = slo_ms - head - up - down - rtt_ms
        server = float(server_ms(spec.name, p))
        need = float(need_fn(spec.name, p))
        out.append(
            Choice(
                partition=p,
                predicted_latency_ms=head + up + server + down + rtt_ms,
                server_budget_ms=budget,
                feasible=budget >= need * (1 - _EPS),
                device_ms=head,
                upload_ms=up,
                download_ms=down,
                server_ms=server,
                energy_mj=device.active_w * head + device.tx_energy_mj(up),
            )
        )
    return tuple(out)


def _fastest(points: Sequence[Choice]) -> Choice:
    return min(points, key=lambda c: (c.predicted_latency_ms, c.partition))


def _neurosurgeon(points: Sequence[Choice], fixed: int | None) -> Choice:
    ok = [c for c in points if c.feasible]
    return _fastest(ok or points)


def _energy(points: Sequence[Choice], fixed: int | None) -> Choice:
    ok = [c for c in points if c.feasible]
    if not ok:
        return _fastest(points)
    return min(ok, key=lambda c: (c.energy_mj, c.predicted_latency_ms, c.partition))


def _fixed(points: Sequence[Choice], fixed: int | None) -> Choice:
    if fixed is None or isinstance(fixed, bool) or not isinstance(fixed, int):
        raise GraftInputError(f"policy 'fixed' needs an integer partition, got {fixed!r}",
                              field="partition")
    if not 0 <= fixed < len(points):
        raise GraftInputError(
            f"partition must be in 0..{len(points) - 1}, got {fixed}", field="partition"
        )
    return points[fixed]


Policy = Callable[[Sequence[Choice], int | None], Choice]

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
) -> Choice:
    """The point ``policy`` picks; ``partition`` is the point of the ``fixed`` policy."""
    pick = get_policy(policy)
    points = evaluate_points(
        model, device, bandwidth_mbps, slo_ms, rtt_ms, server_ms,
        needed_ms=needed_ms, downlink_mbps=downlink_mbps,
    )
    choice = pick(points, partition)
    if not choice.feasible:
        logger.debug(
            "%s on %s: no feasible point at %.3f Mbit/s, SLO %.1f ms; p=%d predicts %.1f ms",
            policy, device.name, bandwidth_mbps, slo_ms, choice.partition,
            choice.predicted_latency_ms,
        )
    return choice
