"""Synthetic uplink traces: a seeded Markov-modulated rate process, and trace writers.

The link is in one of a few states (good / fair / poor / outage). Every ``step_s`` seconds
it moves to a state drawn from its row of a transition matrix, so a state lasts a geometric
number of steps (mean ``1 / (1 - p_stay)``), the discrete form of an exponential holding
time. Within a state each step's rate is the state's mean times a lognormal factor of mean
1 (log-sd ``sigma``), which gives the long upper tail of measured cellular links. The
process starts from its stationary distribution, so any window of a trace is typical, and
the long-run mean is :meth:`MarkovRateModel.mean_mbps` (stationary mix of the state means).

``LTE_UPLINK`` is loosely matched to the summary of measured US LTE uplinks in
``../shared/data/traces/README.md`` (1-s bins, all US LTE uplink traces): mean 2.67 Mbit/s,
median 1.10, p10 0.13. The model's own figures (1-s bins of long runs: mean 2.71 by
construction, median 1.37, p10 0.13, p90 7.0; see ``docs/traces.md``) match the mean and p10;
the median is a little higher. Near-outages run at a few tens of kbit/s for about 5 s.

Writers: :func:`write_rate_csv` (read back by ``read_rate_csv``) and :func:`write_mahimahi`
(a real ``mm-link`` trace file, read back by ``read_mahimahi``), so tests and demos can make
small real-format files.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graft.workload.traces import PACKET_BYTES, RateTrace

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LinkState:
    """One state of the link: its name and mean rate (Mbit/s, >= 0)."""

    name: str
    mean_mbps: float


@dataclass(frozen=True)
class MarkovRateModel:
    """A Markov-modulated rate process (see the module docstring).

    ``transitions[i][j]``: probability of moving from state ``i`` to ``j`` at each step
    (rows sum to 1). ``sigma``: log-sd of the per-step lognormal factor (0 = constant rate
    within a state).
    """

    states: tuple[LinkState, ...]
    transitions: tuple[tuple[float, ...], ...]
    step_s: float = 1.0
    sigma: float = 0.6

    def verify(self) -> None:
        n = len(self.states)
        p = np.asarray(self.transitions, dtype=float)
        if n == 0 or p.shape != (n, n):
            raise ValueError(f"transitions must be {n}x{n}, got shape {p.shape}")
        if np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0):
            raise ValueError("each row of transitions must be probabilities summing to 1")
        if any(s.mean_mbps < 0 for s in self.states) or self.mean_mbps() <= 0:
            raise ValueError("state means must be >= 0, and not all 0")
        if self.step_s <= 0 or self.sigma < 0:
            raise ValueError("step_s must be > 0 and sigma >= 0")

    def stationary(self) -> np.ndarray:
        """Long-run share of time in each state (left eigenvector of the transitions)."""
        p = np.asarray(self.transitions, dtype=float)
        n = len(self.states)
        # Solve pi (P - I) = 0 with sum(pi) = 1, as a least-squares system.
        a = np.vstack([(p - np.eye(n)).T, np.ones(n)])
        b = np.concatenate([np.zeros(n), [1.0]])
        pi, *_ = np.linalg.lstsq(a, b, rcond=None)
        return pi

    def mean_mbps(self) -> float:
        """The long-run mean rate."""
        means = np.array([s.mean_mbps for s in self.states])
        return float(self.stationary() @ means)

    def mean_holding_s(self) -> np.ndarray:
        """Mean time spent in each state per visit, seconds."""
        stay = np.diag(np.asarray(self.transitions, dtype=float))
        return self.step_s / np.maximum(1.0 - stay, 1e-12)

    def sample_states(self, n_steps: int, rng: np.random.Generator) -> np.ndarray:
        """A state index per step, starting from the stationary distribution."""
        cum = np.cumsum(np.asarray(self.transitions, dtype=float), axis=1)
        u = rng.random(n_steps)
        states = np.empty(n_steps, dtype=np.int64)
        state = int(np.searchsorted(np.cumsum(self.stationary()), u[0], side="right"))
        for i in range(n_steps):
            states[i] = state = min(state, len(self.states) - 1)
            if i + 1 < n_steps:
                state = int(np.searchsorted(cum[state], u[i + 1], side="right"))
        return states

    def generate(self, duration_s: float, seed: int = 0, *, name: str | None = None) -> RateTrace:
        """A trace of ``ceil(duration_s / step_s)`` steps, deterministic for a seed."""
        self.verify()
        n_steps = max(1, int(np.ceil(duration_s / self.step_s)))
        rng = np.random.default_rng(seed)
        states = self.sample_states(n_steps, rng)
        means = np.array([s.mean_mbps for s in self.states])[states]
        jitter = rng.lognormal(-0.5 * self.sigma**2, self.sigma, n_steps)
        rates = means * jitter
        if not rates.sum() > 0:  # only possible when the run never leaves zero-rate states
            rates[-1] = self.mean_mbps()
        edges = np.arange(n_steps + 1) * self.step_s * 1000.0
        return RateTrace(edges, rates, name=name or f"markov-seed{seed}")


LTE_UPLINK = MarkovRateModel(
    states=(
        LinkState("good", 8.2),
        LinkState("fair", 2.2),
        LinkState("poor", 0.45),
        LinkState("outage", 0.03),
    ),
    transitions=(
        (0.92, 0.07, 0.01, 0.00),
        (0.03, 0.92, 0.04, 0.01),
        (0.01, 0.06, 0.88, 0.05),
        (0.00, 0.05, 0.15, 0.80),
    ),
)
"""Default model: LTE uplink, loosely matched to the traces README (see module docstring)."""


def markov_trace(duration_s: float = 600.0, seed: int = 0,
                 model: MarkovRateModel = LTE_UPLINK) -> RateTrace:
    """The demo's and the tests' synthetic uplink: ``model`` run for ``duration_s``."""
    return model.generate(duration_s, seed)


def write_rate_csv(trace: RateTrace, path: str | Path) -> None:
    """Write ``time_s,mbps`` rows that ``read_rate_csv`` reads back as the same trace.

    Each row is an interval's start; the reader lets the last row hold as long as the step
    before it, so when the last interval has another length it is written as two half rows.
    """
    starts = list(trace.edges_ms[:-1] / 1000.0)
    rates = list(trace.rates_mbps)
    last = (trace.edges_ms[-1] - trace.edges_ms[-2]) / 1000.0
    previous = starts[-1] - starts[-2] if len(starts) > 1 else 1.0
    if last != previous:
        starts.append(starts[-1] + last / 2)
        rates.append(rates[-1])
    lines = ["time_s,mbps"] + [f"{float(t)!r},{float(r)!r}" for t, r in zip(starts, rates)]
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    logger.debug("wrote %s: %d rows", path, len(rates))


def packet_timestamps(trace: RateTrace, packet_bytes: int = PACKET_BYTES) -> np.ndarray:
    """Mahimahi delivery opportunities that carry ``trace``'s bytes: one at the first whole
    ms by which each further ``packet_bytes`` have been delivered. The last one is moved to
    the (rounded) period, which is how ``mm-link`` reads a trace's period. Bytes short of a
    whole packet at the end of the period are dropped (less than one packet per period)."""
    period = int(round(trace.duration_ms))
    n = int(trace.period_bytes // packet_bytes)
    if period < 1 or n < 1:
        raise ValueError(f"trace {trace.name!r} is too short for one {packet_bytes}-byte packet")
    targets = np.arange(1, n + 1, dtype=float) * packet_bytes
    times = trace.time_at_bytes(targets)
    ts = np.clip(np.ceil(times - 1e-9), 0, period).astype(np.int64)
    ts[-1] = period
    return ts


def write_mahimahi(trace: RateTrace, path: str | Path, packet_bytes: int = PACKET_BYTES) -> None:
    """Write ``trace`` as a Mahimahi packet-delivery file (``mm-link`` can replay it)."""
    ts = packet_timestamps(trace, packet_bytes)
    Path(path).write_text("\n".join(map(str, ts.tolist())) + "\n", encoding="utf-8")
    logger.debug("wrote %s: %d opportunities over %d ms", path, ts.size, ts[-1])
