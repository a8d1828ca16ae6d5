"""Packing stage processes onto GPUs.

Each stage replica is one process holding a slice of a GPU (a time-shared slice is one
process for all its members). A GPU takes processes while their shares sum to at most 1,
their memory (``rules.process_memory_bytes``) fits, and it holds fewer than
``max_processes`` of them (48 MPS clients on Volta and later). First-fit decreasing by share:
a classic bin-packing heuristic within 11/9 OPT + 1 bins.

Consecutive stages of a route hand activations on: a device copy when they share a GPU, the
interconnect when they do not (``graft.plan.rules``). ``pack`` is told which single-process
units a route chains together (``together``) and also tries packing each such cluster as one
item, so that its hand-offs stay on one GPU; it keeps that variant unless it needs more GPUs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from graft.cost.base import CostModel
from graft.errors import GraftInputError

SHARE_SLACK = 1e-9


@dataclass(frozen=True)
class Unit:
    """What packing places: ``replicas`` processes of ``share`` and ``memory_bytes`` each."""

    share: float
    replicas: int
    memory_bytes: int


@dataclass
class _Gpu:
    share: float = 0.0
    memory: int = 0
    processes: int = 0


def _first_fit(items: list[tuple[float, int, int, list[int]]], cost: CostModel) -> list[int]:
    """First-fit decreasing of ``items`` (share, memory, processes, the units they hold):
    the GPU of each item."""
    limits = cost.limits
    gpus: list[_Gpu] = []
    where = [0] * len(items)
    order = sorted(range(len(items)), key=lambda i: (-items[i][0], -items[i][1], i))
    for i in order:
        share, mem, procs, _ = items[i]
        g = next((n for n, gpu in enumerate(gpus)
                  if gpu.share + share <= 1.0 + SHARE_SLACK
                  and gpu.memory + mem <= limits.memory_bytes
                  and gpu.processes + procs <= limits.max_processes), len(gpus))
        if g == len(gpus):
            gpus.append(_Gpu())
        gpus[g].share += share
        gpus[g].memory += mem
        gpus[g].processes += procs
        where[i] = g
    return where


def _clusters(units: Sequence[Unit], together: Sequence[Sequence[int]], cost: CostModel
              ) -> list[list[int]]:
    """``together``'s single-process units cut, in order, into runs that fit one GPU."""
    limits = cost.limits
    out: list[list[int]] = []
    for chain in together:
        run: list[int] = []
        share = mem = 0.0
        for u in chain:
            unit = units[u]
            if unit.replicas != 1:
                continue
            if run and (share + unit.share > 1.0 + SHARE_SLACK
                        or mem + unit.memory_bytes > limits.memory_bytes
                        or len(run) + 1 > limits.max_processes):
                out.append(run)
                run, share, mem = [], 0.0, 0.0
            run.append(u)
            share += unit.share
            mem += unit.memory_bytes
        if run:
            out.append(run)
    return out


def pack(units: Sequence[Unit], cost: CostModel,
         together: Sequence[Sequence[int]] = ()) -> list[list[int]]:
    """Place every process; returns, for each unit, the GPU index of each of its replicas
    (GPUs numbered from 0). ``together``: disjoint lists of unit indices a route chains
    (single-replica units), kept on one GPU where that costs no extra GPU."""
    limits = cost.limits
    for i, u in enumerate(units):
        if u.memory_bytes > limits.memory_bytes:
            raise GraftInputError(
                f"a replica of stage {i} needs {u.memory_bytes / 2**30:.2f} GiB, more than the "
                f"{limits.memory_bytes / 2**30:.2f} GiB of one device")
    plain = [(u.share, u.memory_bytes, 1, [i]) for i, u in enumerate(units)
             for _ in range(u.replicas)]
    best = _place(plain, units, cost)
    clusters = [c for c in _clusters(units, together, cost) if len(c) > 1]
    if clusters:
        grouped = {u for c in clusters for u in c}
        items = [(sum(units[u].share for u in c), sum(units[u].memory_bytes for u in c),
                  len(c), c) for c in clusters]
        items += [t for t in plain if t[3][0] not in grouped]
        tried = _place(items, units, cost)
        if _gpu_count(tried) <= _gpu_count(best):
            best = tried
    return best


def _place(items: list[tuple[float, int, int, list[int]]], units: Sequence[Unit],
           cost: CostModel) -> list[list[int]]:
    where = _first_fit(items, cost)
    placed: list[list[int]] = [[] for _ in units]
    for (_, _, _, members), g in zip(items, where):
        for u in members:
            placed[u].append(g)
    return placed


def _gpu_count(placed: list[list[int]]) -> int:
    return 1 + max((g for gs in placed for g in gs), default=-1)
