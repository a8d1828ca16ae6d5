"""Seeded workloads of the tiny model for the simulator's tests."""

from __future__ import annotations

import numpy as np

from graft.workload.flows import Flow, Workload


def random_workload(seed: int, n: int) -> Workload:
    """``n`` flows at random partitions, rates 5-400 req/s and budgets 8-30 ms."""
    rng = np.random.default_rng(seed)
    return Workload(tuple(
        Flow(f"f{i}", "tiny", int(rng.integers(0, 6)), float(rng.uniform(5, 400)),
             float(rng.uniform(8, 30))) for i in range(n)))


def low_rate_workload() -> Workload:
    """12 low-rate flows over every partition: stages that time-share slices."""
    return Workload(tuple(Flow(f"f{i}", "tiny", i % 6, 3.0 + i, 8.0 + 0.5 * i)
                          for i in range(12)))
