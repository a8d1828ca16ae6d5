"""Arrival processes: when requests of a stream at a given rate are sent."""

from __future__ import annotations

import numpy as np

#: Arrival processes by name: Poisson, or fixed intervals from a random phase.
ARRIVALS = ("poisson", "fixed")


def times_at_rate_ms(rate: float, duration_s: float, rng: np.random.Generator,
                     arrivals: str) -> np.ndarray:
    """Times in [0, duration) ms: Poisson at ``rate`` per second, or every ``1/rate`` s from
    a random phase."""
    if arrivals not in ARRIVALS:
        raise ValueError(f"arrivals must be one of {ARRIVALS}, got {arrivals!r}")
    horizon_ms = duration_s * 1000.0
    gap_ms = 1000.0 / rate
    if arrivals == "fixed":
        return np.arange(rng.uniform(0.0, gap_ms), horizon_ms, gap_ms)
    expected = horizon_ms / gap_ms
    chunk = int(expected + 6.0 * np.sqrt(expected) + 16)
    times = np.cumsum(rng.exponential(gap_ms, size=chunk))
    while times[-1] < horizon_ms:
        more = times[-1] + np.cumsum(rng.exponential(gap_ms, size=chunk))
        times = np.concatenate([times, more])
    return times[times < horizon_ms]
