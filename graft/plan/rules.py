"""The rules every plan obeys, written once: planners, the verifier, the simulator and the
runtime all call these functions.

They follow from the batching policy every executor runs (``graft.serving.batching``): a stage
replica forms a batch of at most ``batch`` queued requests as soon as it is idle, never
waiting for a batch to fill, and runs it in ``exec_ms``.

* **Stage time (2e rule).** A request reaching a busy replica waits for the batch in
  progress (at most ``exec_ms``), then runs in the next one: it spends at most
  ``2 * exec_ms`` in the stage, provided the stage keeps up with its traffic.
* **Duty cycle.** Stages that take turns on one executor (the members of a time-shared
  slice, or the sessions of a whole GPU in a temporal plan) run one batch each per cycle of
  ``duty_cycle_ms`` (the sum of their ``exec_ms``): a request waits at most one cycle for its
  stage's turn, then runs, so it spends at most ``duty_cycle_ms + exec_ms``.
* **Capacity.** A replica runs a batch every ``exec_ms`` (every ``duty_cycle_ms`` when it takes
  turns), so ``replicas`` of them serve ``replicas * batch * 1000 / period`` requests per
  second; a stage's capacity must be at least its rate.
* **Hand-off.** When a batch ends, its activations move to the next stage of each route:
  nothing inside one process, a device-to-device copy between processes on one GPU, the
  interconnect between GPUs of one node, the network between nodes (a plan placed on a
  cluster, ``graft.plan.cluster``). The copy runs beside the next batch (another stream), so it
  adds to the request's time but not to the stage's period. A route's time is the sum of its
  stages' times plus its hand-offs, and must fit the flow's budget.
* **Memory and processes.** Every stage replica is one process (the members of a time-shared
  slice share one) holding a CUDA context, its weights and two activation buffers at its
  batch; the processes on one device fit its memory and its process limit (48 MPS clients).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from graft.cost.base import DEVICE, INTERCONNECT, NETWORK, PROCESS, CostModel
from graft.models.catalog import get_model

if TYPE_CHECKING:
    from graft.plan.cluster import Placement
    from graft.plan.plan import Stage

#: Relative slack for floating-point comparisons of latencies and rates.
EPS = 1e-9

Number = TypeVar("Number", float, np.ndarray)


def stage_time_ms(exec_ms: Number, duty_cycle_ms: Number | None = None) -> Number:
    """Worst-case time a request spends in a stage: ``2 * exec_ms``, or
    ``duty_cycle_ms + exec_ms`` for a stage that takes turns with others."""
    if duty_cycle_ms is None:
        return 2 * exec_ms
    return duty_cycle_ms + exec_ms


def replicas_needed(rate: float, batch: int, period_ms: float) -> int:
    """Fewest replicas with ``replicas * batch * 1000 / period_ms >= rate``."""
    if rate <= 0:
        return 1
    return max(1, math.ceil(rate * period_ms / (1000.0 * batch) * (1 - EPS)))


def seconds_per_request(batch: Number, period_ms: Number) -> Number:
    """Replica-seconds one request takes at ``batch`` every ``period_ms`` (slightly
    shortened, so that a rate exactly at capacity needs no extra replica)."""
    return period_ms / (1000.0 * batch) * (1 - EPS)


def replicas_for(rate: Number, per_request_s: np.ndarray) -> np.ndarray:
    """``replicas_needed`` for arrays of ``seconds_per_request`` (floats; ``rate`` and
    ``per_request_s`` broadcast against each other)."""
    reps = np.ceil(rate * per_request_s)
    return np.maximum(reps, 1.0, out=reps)


def capacity_rps(replicas: int, batch: int, period_ms: float) -> float:
    """Requests per second ``replicas`` serve when each runs ``batch`` every ``period_ms``."""
    return replicas * batch * 1000.0 / period_ms


def longest_period_ms(batch: Number, rate: Number) -> Number:
    """The longest period (a duty cycle) at which one replica running ``batch`` still
    carries ``rate``: the inverse of ``batch_needed``."""
    return 1000.0 * batch / rate


def batch_needed(rate: float, period_ms: float) -> float:
    """The (fractional) batch one replica needs to serve ``rate`` with one batch every
    ``period_ms``: a stage taking turns in a duty cycle runs at least this."""
    return rate * period_ms / 1000.0


def fastest_ms(cost: CostModel, model: str, start: int, end: int) -> float:
    """The least ``exec_ms`` blocks [start, end) take on any batch and share of ``cost``."""
    key = ("fastest_ms", model, start, end)
    hit = cost.cache.get(key)
    if hit is None:
        hit = cost.cache[key] = float(np.min(cost.latency_grid(model, start, end)))
    return hit


def needed_budget_ms(cost: CostModel, model: str, partition: int) -> float:
    """Least server budget any plan needs for a fragment entering at ``partition``: its
    blocks run as one stage at their fastest (splitting a fragment into stages only adds
    per-stage costs and hand-offs)."""
    return stage_time_ms(fastest_ms(cost, model, partition, get_model(model).num_blocks))


# --- hand-offs ----------------------------------------------------------------------------

def sample_bytes_at(model: str, block: int) -> int:
    """Bytes of one sample's activation entering ``block`` (fp32, from the block table)."""
    return get_model(model).in_bytes(block)


def handoff_ms(cost: CostModel, model: str, block: int, batch: Number, kind: str,
               placement: Placement | None = None) -> Number:
    """Time to move one batch of ``batch`` activations entering ``block`` between two
    stages, over a hand-off of ``kind`` (``PROCESS``, ``DEVICE``, ``INTERCONNECT``, or
    ``NETWORK``: over ``placement``'s cluster network)."""
    if kind == PROCESS:
        return 0 * batch
    if kind == NETWORK:
        if placement is None:
            raise ValueError("a hand-off across nodes needs the plan's placement")
        net = placement.cluster
        return net.network_latency_ms + batch * sample_bytes_at(model, block) * 1000.0 / (
            net.network_bytes_per_s)
    links = cost.links
    return links.latency_ms + batch * sample_bytes_at(model, block) * 1000.0 / links.bytes_per_s(
        kind)


def planned_handoff_ms(cost: CostModel, model: str, end: int, batch: Number) -> Number:
    """The hand-off a planner charges a stage ending at block ``end``: across GPUs (the
    worst case, whatever the packing), or nothing after the model's last block."""
    if end >= get_model(model).num_blocks:
        return 0 * batch
    return handoff_ms(cost, model, end, batch, INTERCONNECT)


def handoff_kind(a: Stage, b: Stage, placement: Placement | None = None) -> str:
    """The slowest hand-off a request can meet from stage ``a`` to stage ``b``, over every
    pair of their replicas: nothing inside one time-shared slice (one process), a device
    copy when every replica of both sits on one GPU, the network when they sit on more than
    one node of ``placement``, the interconnect otherwise."""
    if a.slice is not None and a.slice == b.slice:
        return PROCESS
    gpus = set(a.gpus) | set(b.gpus)
    if len(gpus) == 1:
        return DEVICE
    if placement is not None and placement.spans_nodes(gpus):
        return NETWORK
    return INTERCONNECT


def route_handoffs_ms(cost: CostModel, chain: Sequence[Stage],
                      placement: Placement | None = None) -> list[float]:
    """The hand-off after each stage of a route but the last (each at the sending stage's
    batch, over the slowest link between the two stages' replicas)."""
    return [float(handoff_ms(cost, a.model, a.end, a.batch, handoff_kind(a, b, placement),
                             placement))
            for a, b in zip(chain, chain[1:])]


def route_time_ms(cost: CostModel, chain: Sequence[Stage],
                  placement: Placement | None = None) -> float:
    """Worst-case time a request spends in the server on this route: its stages' times plus
    the hand-offs between them."""
    return (sum(stage_time_ms(s.exec_ms, s.duty_cycle_ms) for s in chain)
            + sum(route_handoffs_ms(cost, chain, placement)))


def least_route_ms(cost: CostModel, chain: Sequence[Stage],
                   placement: Placement | None = None) -> float:
    """The least time a request can spend on this route: every stage idle when it arrives
    (its ``exec_ms`` alone), plus the hand-offs of batches of one."""
    return sum(s.exec_ms for s in chain) + sum(
        float(handoff_ms(cost, a.model, a.end, 1, handoff_kind(a, b, placement), placement))
        for a, b in zip(chain, chain[1:]))


# --- memory -------------------------------------------------------------------------------

def segment_memory_bytes(model: str, start: int, end: int, batch: int) -> int:
    """Memory blocks [start, end) hold in a process besides its context: their weights and
    two activation buffers (in and out) sized for the largest activation at ``batch``."""
    spec = get_model(model)
    biggest = max([spec.in_bytes(start)] + [b.out_bytes for b in spec.blocks[start:end]])
    return spec.segment_param_bytes(start, end) + 2 * batch * biggest


def process_memory_bytes(cost: CostModel, segments: Iterable[tuple[str, int, int, int]]) -> int:
    """Memory of one stage process running ``segments`` ((model, start, end, batch): one for
    a stage replica, one per member for a time-shared slice): one CUDA context plus each
    segment's weights and activations."""
    return cost.limits.context_bytes + sum(segment_memory_bytes(*s) for s in segments)
