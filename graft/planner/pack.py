"""Packing stage replicas onto GPUs.

Each replica is one process holding a slice of a GPU. A GPU takes replicas while their
shares sum to at most 1, their memory (CUDA context + weights + activation buffers) fits,
and it has fewer than ``max_processes`` of them (48 MPS clients on Volta and later).
First-fit decreasing by share: a classic bin-packing heuristic within 11/9 OPT + 1 bins.
"""

from __future__ import annotations

from dataclasses import dataclass

from graft.cost.base import CostModel, stage_memory_bytes
from graft.errors import GraftInputError
from graft.models.catalog import get_model

SHARE_SLACK = 1e-9


@dataclass
class _Gpu:
    share: float = 0.0
    memory: int = 0
    processes: int = 0


def segment_memory_bytes(cost: CostModel, model: str, start: int, end: int, batch: int) -> int:
    """Memory one replica of stage [start, end) at ``batch`` holds on its device."""
    spec = get_model(model)
    biggest = max([spec.in_bytes(start)] + [b.out_bytes for b in spec.blocks[start:end]])
    return stage_memory_bytes(cost, spec.segment_param_bytes(start, end), biggest, batch)


def pack(
    stages: list[tuple[float, int, int]], cost: CostModel
) -> list[list[int]]:
    """Place every replica; ``stages[i] = (share, replicas, memory_bytes)``.

    Returns, for each stage, the GPU index of each of its replicas (GPUs numbered from 0).
    """
    limits = cost.limits
    order = sorted(
        ((share, mem, i) for i, (share, reps, mem) in enumerate(stages) for _ in range(reps)),
        key=lambda t: (-t[0], -t[1], t[2]),
    )
    gpus: list[_Gpu] = []
    placed: list[list[int]] = [[] for _ in stages]
    for share, mem, i in order:
        if mem > limits.memory_bytes:
            raise GraftInputError(
                f"a replica of stage {i} needs {mem / 2**30:.2f} GiB, more than the "
                f"{limits.memory_bytes / 2**30:.2f} GiB of one device"
            )
        g = next((n for n, gpu in enumerate(gpus)
                  if gpu.share + share <= 1.0 + SHARE_SLACK
                  and gpu.memory + mem <= limits.memory_bytes
                  and gpu.processes < limits.max_processes), len(gpus))
        if g == len(gpus):
            gpus.append(_Gpu())
        gpus[g].share += share
        gpus[g].memory += mem
        gpus[g].processes += 1
        placed[i].append(g)
    return placed
