"""Replica shaping: choose shares that pack, for stages with several replicas.

The cheapest configuration of a busy stage often has a share just above one half (say
0.77): every replica then holds a GPU of its own and a quarter of each GPU idles. Or it has
hundreds of 1% replicas, each holding a CUDA context, that fill a GPU's memory or its 48
MPS processes long before its share. For a stage with several replicas, ``shape_replicas``
looks among the options that fit the same time cap for one whose replicas pack onto fewer
whole GPUs (``min(floor(1 / share), processes, memory / replica memory)`` per GPU),
accepting at most ``tolerance`` more total share for it.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from graft.cost.base import CostModel
from graft.plan import rules
from graft.planner.assemble import StageDraft
from graft.planner.configs import EPS, segment_options

DEFAULT_TOLERANCE = 0.02


def gpus_for(share: np.ndarray | float, replicas: np.ndarray | int,
             per_gpu_limit: np.ndarray | float = np.inf) -> np.ndarray:
    """Whole GPUs ``replicas`` of ``share`` take when packed among themselves, at most
    ``per_gpu_limit`` of them on one GPU (processes, memory)."""
    per_gpu = np.minimum(np.floor(1.0 / np.asarray(share) + EPS), per_gpu_limit)
    return np.ceil(np.asarray(replicas) / np.maximum(per_gpu, 1) - EPS)


def _per_gpu_limit(cost: CostModel, d: StageDraft, batches: np.ndarray) -> np.ndarray:
    """How many replicas of ``d``'s segment fit one GPU by processes and by memory."""
    limits = cost.limits
    mem = np.array([rules.process_memory_bytes(cost, [(d.model, d.start, d.end, int(b))])
                    for b in batches], dtype=float)
    return np.minimum(limits.max_processes, np.floor(limits.memory_bytes / mem))


def shape_replicas(drafts: list[StageDraft], cost: CostModel,
                   tolerance: float = DEFAULT_TOLERANCE) -> list[StageDraft]:
    out = []
    for d in drafts:
        if d.config.replicas < 2 or d.slice_key is not None:
            out.append(d)
            continue
        opts = segment_options(cost, d.model, d.start, d.end)
        ok = opts.time_ms <= d.time_cap_ms * (1 + EPS)
        reps = rules.replicas_for(d.rate, opts.per_request_s)
        total = opts.share * reps
        ok &= total <= d.config.cost * (1 + tolerance) + EPS
        if not ok.any():
            out.append(d)
            continue
        limit_of = dict(zip(cost.batches, _per_gpu_limit(cost, d, np.asarray(cost.batches))))
        limit = np.array([limit_of[int(b)] for b in opts.batch])
        gpus = np.where(ok, gpus_for(opts.share, reps, limit), np.inf)
        best = int(np.lexsort((total, gpus))[0])
        if gpus[best] < gpus_for(d.config.share, d.config.replicas, limit_of[d.config.batch]):
            out.append(replace(d, config=opts.config(best, d.rate)))
        else:
            out.append(d)
    return out
