"""A tiny synthetic cost model for planner tests: numbers small enough to check by hand.

A stage [s, e) costs
``overhead + sum(work[s:e]) * batch**batch_exponent / min(share, batch / knee)`` ms: a
fixed cost per batch, plus work inversely proportional to share up to a knee where a batch
of ``batch`` samples cannot use more than ``batch / knee`` of the GPU. It implements the
CostModel protocol over the real model table (block counts come from graft's catalog).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from graft.cost.base import CPU_LINKS, DEFAULT_BATCHES, PERCENT_SHARES, DeviceLimits, Links
from graft.models.catalog import get_model


@dataclass(eq=False)
class ToyCost:
    work_ms: dict[str, list[float]] = field(default_factory=dict)
    overhead_ms: float = 0.05
    knee: float = 8.0
    #: below 1, a batch of B costs less than B single samples (economies of batching)
    batch_exponent: float = 1.0
    name: str = "toy"
    shares: tuple[float, ...] = PERCENT_SHARES
    batches: tuple[int, ...] = DEFAULT_BATCHES
    limits: DeviceLimits = field(default_factory=lambda: DeviceLimits(
        memory_bytes=16 * 2**30, context_bytes=300 * 2**20))
    links: Links = CPU_LINKS
    cache: dict = field(default_factory=dict)

    def _work(self, model: str) -> list[float]:
        if model not in self.work_ms:
            spec = get_model(model)
            self.work_ms[model] = [0.05 + b.flops / 2e9 for b in spec.blocks]
        return self.work_ms[model]

    def latency_ms(self, model: str, start: int, end: int, batch: int, share: float) -> float:
        usable = min(share, batch / self.knee)
        w = sum(self._work(model)[start:end])
        return self.overhead_ms + w * batch**self.batch_exponent / usable

    def latency_grid(self, model: str, start: int, end: int) -> np.ndarray:
        b = np.asarray(self.batches, dtype=float)[:, None]
        g = np.asarray(self.shares, dtype=float)[None, :]
        usable = np.minimum(g, b / self.knee)
        w = sum(self._work(model)[start:end])
        return self.overhead_ms + w * b**self.batch_exponent / usable
