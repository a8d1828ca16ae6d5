"""Uplink bandwidth estimators a client updates as it goes.

A client feeds every throughput sample it observes (Mbit/s: bytes of a finished upload over
its duration, or a trace's windowed rate) to ``update`` and asks ``estimate_mbps`` before it
picks a partition point. Before the first sample an estimator answers its ``prior_mbps``
(default :data:`DEFAULT_PRIOR_MBPS`). ``track(samples)`` feeds a whole series in order and
answers the estimate after each sample, exactly as ``update`` then ``estimate_mbps`` one
sample at a time would (the simulator's clients feed a series per client).

* :class:`EwmaEstimator` -- exponentially weighted moving average; the first sample replaces
  the prior outright (the prior is a guess, not a measurement).
* :class:`HarmonicEstimator` -- harmonic mean of the last ``window`` samples, as MPC and
  FESTIVE-style adaptive-bitrate clients do: robust to one-off spikes, pulled down quickly by
  slow samples.

A sample of 0 (an outage) is floored at :data:`MIN_SAMPLE_MBPS` so that both estimates stay
positive and defined.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from graft.errors import GraftInputError

#: What an estimator answers before its first sample, Mbit/s (a modest cellular uplink).
DEFAULT_PRIOR_MBPS = 10.0

#: Samples below this are raised to it, Mbit/s (keeps harmonic means finite on outages).
MIN_SAMPLE_MBPS = 0.01


@runtime_checkable
class BandwidthEstimator(Protocol):
    def update(self, sample_mbps: float) -> None:
        """Record one throughput sample, Mbit/s."""
        ...

    def estimate_mbps(self) -> float:
        """The current uplink estimate, Mbit/s (the prior before any sample)."""
        ...

    def track(self, samples_mbps: npt.ArrayLike) -> np.ndarray:
        """Record each sample in turn; the estimate after each one."""
        ...


def _check_sample(sample_mbps: float) -> float:
    if isinstance(sample_mbps, bool) or not isinstance(sample_mbps, (int, float)):
        raise GraftInputError(f"bandwidth sample must be a number, got {sample_mbps!r}")
    if not (math.isfinite(sample_mbps) and sample_mbps >= 0):
        raise GraftInputError(f"bandwidth sample must be finite and >= 0, got {sample_mbps!r}")
    return max(float(sample_mbps), MIN_SAMPLE_MBPS)


def _check_samples(samples_mbps: npt.ArrayLike) -> np.ndarray:
    """``_check_sample`` of every sample of a 1-d series, as a float array."""
    arr = np.asarray(samples_mbps)
    if arr.ndim != 1 or arr.dtype.kind not in "iuf":
        raise GraftInputError(f"bandwidth samples must be a 1-d series of numbers, got "
                              f"{arr.dtype} of shape {arr.shape}")
    bad = ~(np.isfinite(arr) & (arr >= 0))
    if bad.any():
        raise GraftInputError(f"bandwidth sample must be finite and >= 0, got {arr[bad][0]!r}")
    return np.maximum(arr.astype(float), MIN_SAMPLE_MBPS)


def _check_prior(prior_mbps: float) -> float:
    if not (math.isfinite(prior_mbps) and prior_mbps > 0):
        raise GraftInputError(f"prior_mbps must be finite and > 0, got {prior_mbps!r}")
    return float(prior_mbps)


class EwmaEstimator:
    """``est <- alpha * sample + (1 - alpha) * est``; the first sample sets ``est``."""

    def __init__(self, alpha: float = 0.3, prior_mbps: float = DEFAULT_PRIOR_MBPS):
        if not 0.0 < alpha <= 1.0:
            raise GraftInputError(f"alpha must be in (0, 1], got {alpha!r}")
        self.alpha = float(alpha)
        self.prior_mbps = _check_prior(prior_mbps)
        self._est: float | None = None

    def update(self, sample_mbps: float) -> None:
        x = _check_sample(sample_mbps)
        self._est = x if self._est is None else self.alpha * x + (1 - self.alpha) * self._est

    def estimate_mbps(self) -> float:
        return self.prior_mbps if self._est is None else self._est

    def track(self, samples_mbps: npt.ArrayLike) -> np.ndarray:
        """The recurrence in Python floats (it is sequential), samples checked at once."""
        keep, est = 1 - self.alpha, self._est
        out = []
        for x in _check_samples(samples_mbps).tolist():
            est = x if est is None else self.alpha * x + keep * est
            out.append(est)
        self._est = est
        return np.array(out, dtype=float)

    def __repr__(self) -> str:
        return f"EwmaEstimator(alpha={self.alpha}, estimate={self.estimate_mbps():.3f} Mbit/s)"


class HarmonicEstimator:
    """Harmonic mean of the last ``window`` samples: ``n / sum(1 / x_i)``."""

    def __init__(self, window: int = 5, prior_mbps: float = DEFAULT_PRIOR_MBPS):
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise GraftInputError(f"window must be an integer >= 1, got {window!r}")
        self.window = window
        self.prior_mbps = _check_prior(prior_mbps)
        self._samples: deque[float] = deque(maxlen=window)

    def update(self, sample_mbps: float) -> None:
        self._samples.append(_check_sample(sample_mbps))

    def estimate_mbps(self) -> float:
        if not self._samples:
            return self.prior_mbps
        return len(self._samples) / sum(1.0 / x for x in self._samples)

    def track(self, samples_mbps: npt.ArrayLike) -> np.ndarray:
        """Every window's sum of ``1 / x`` at once: ``window`` vector additions, oldest
        sample first, so each sum is added up in the order ``estimate_mbps`` adds it."""
        new = _check_samples(samples_mbps)
        held = len(self._samples)
        inv = 1.0 / np.concatenate([np.array(self._samples, dtype=float), new])
        padded = np.concatenate([np.zeros(self.window - 1), inv])
        sums = np.zeros(new.size)
        for j in range(self.window):
            sums = sums + padded[held + j: held + j + new.size]
        counts = np.minimum(np.arange(held + 1, held + new.size + 1), self.window)
        self._samples.extend(new.tolist())
        return counts / sums

    def __repr__(self) -> str:
        return (
            f"HarmonicEstimator(window={self.window}, "
            f"estimate={self.estimate_mbps():.3f} Mbit/s)"
        )
