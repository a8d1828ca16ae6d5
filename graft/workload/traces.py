"""Uplink bandwidth traces: how long a tensor takes to upload, walking a real or synthetic trace.

Two kinds of trace, one interface (:class:`BandwidthTrace`):

* :class:`PacketTrace`: a Mahimahi packet-delivery trace, as ``mm-link`` replays it. Each
  entry is the time (integer ms) of one delivery opportunity of ``packet_bytes`` (1500) bytes.
* :class:`RateTrace`: a piecewise-constant rate in Mbit/s (CSV logs, iperf logs, the
  synthetic generator in :mod:`graft.workload.tracegen`).

Both loop, as ``mm-link`` loops a trace: the trace is periodic with period ``duration_ms``,
on the whole time line. ``transfer_ms(nbytes, start_ms)`` walks the trace from ``start_ms``
(delivery opportunities for packets, the integral of the rate for rates), wrapping around the
end as often as needed, in O(log n) time whatever the size of the transfer.
``transfer_ms_many`` and ``rate_mbps_many`` are the same walks for arrays of transfers and
times, one numpy pass for all of them (what the simulator's clients use per request).

Readers (``read_mahimahi``, ``read_rate_csv``, ``read_iperf_csv``, ``load_trace``) raise
:class:`graft.errors.GraftInputError` naming the file and the line for every malformed input.
The conventions are spelled out in ``docs/traces.md``.
"""

from __future__ import annotations

import logging
import math
import re
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np
import numpy.typing as npt

from graft.errors import GraftInputError

logger = logging.getLogger(__name__)

PACKET_BYTES = 1500
"""Bytes per Mahimahi delivery opportunity (one MTU-sized packet)."""

BYTES_PER_MS_PER_MBPS = 125.0
"""1 Mbit/s delivers 125 bytes per millisecond."""

_PLATEAU_EPS = 1e-9
"""Targets within this fraction of a period's bytes of a cumulative level count as reaching it."""


def _check_transfer_args(nbytes: float, start_ms: float) -> None:
    if not nbytes >= 0:
        raise ValueError(f"nbytes must be >= 0, got {nbytes!r}")
    if not math.isfinite(start_ms):
        raise ValueError(f"start_ms must be finite, got {start_ms!r}")


def _transfer_arrays(nbytes: npt.ArrayLike, start_ms: npt.ArrayLike,
                     dtype: type | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``nbytes`` (as ``dtype``, default kept) and ``start_ms`` (float) broadcast together,
    checked as ``_check_transfer_args`` checks one transfer."""
    n = np.asarray(nbytes, dtype=dtype)
    start = np.asarray(start_ms, dtype=float)
    bad = ~(n >= 0)
    if bad.any():
        raise ValueError(f"nbytes must be >= 0, got {n[bad].flat[0]!r}")
    if not np.isfinite(start).all():
        raise ValueError(f"start_ms must be finite, got {start[~np.isfinite(start)].flat[0]!r}")
    n, start = np.broadcast_arrays(n, start)
    return n, start


def _split_period(t: float, period: float) -> tuple[int, float]:
    """``t = k * period + x`` with integer ``k`` and ``0 <= x < period``."""
    k = math.floor(t / period)
    x = t - k * period
    if x < 0:
        k, x = k - 1, x + period
    elif x >= period:
        k, x = k + 1, x - period
    return k, x


def _split_period_array(t: np.ndarray, period: float) -> tuple[np.ndarray, np.ndarray]:
    k = np.floor(t / period)
    x = t - k * period
    low, high = x < 0, x >= period
    k = k - low + high
    x = x + period * low - period * high
    return k, x


def _frozen(a: npt.ArrayLike, dtype: type) -> np.ndarray:
    arr = np.array(a, dtype=dtype)
    arr.setflags(write=False)
    return arr


class BandwidthTrace(ABC):
    """A looping uplink trace: bytes delivered over time.

    Subclasses give the period, the bytes delivered per period, the cumulative delivery
    function and its inverse (``transfer_ms``); rates and statistics follow from those.
    """

    name: str

    @property
    @abstractmethod
    def duration_ms(self) -> float:
        """The trace's period: it repeats every ``duration_ms``."""

    @property
    @abstractmethod
    def period_bytes(self) -> float:
        """Bytes the trace can deliver in one period (> 0)."""

    @abstractmethod
    def delivered_bytes(self, t_ms: npt.ArrayLike) -> np.ndarray:
        """Bytes deliverable in ``[0, t]`` (``(0, t]`` for packets); periodic extension for
        ``t`` outside one period, so differences give the bytes in any window."""

    @abstractmethod
    def transfer_ms(self, nbytes: int, start_ms: float) -> float:
        """Time to push ``nbytes`` through the link, starting at ``start_ms``."""

    @abstractmethod
    def transfer_ms_many(self, nbytes: npt.ArrayLike, start_ms: npt.ArrayLike) -> np.ndarray:
        """``transfer_ms`` of each (``nbytes``, ``start_ms``) pair (broadcast together), each
        transfer on its own (they do not share the link)."""

    def mean_mbps(self) -> float:
        """Mean rate over one period, Mbit/s."""
        return self.period_bytes / (self.duration_ms * BYTES_PER_MS_PER_MBPS)

    def rate_mbps(self, t_ms: float, window_ms: float = 1000.0) -> float:
        """Throughput over the window ``(t - window, t]``, Mbit/s (what an estimator sees)."""
        return float(self.rate_mbps_many(t_ms, window_ms))

    def rate_mbps_many(self, t_ms: npt.ArrayLike, window_ms: float = 1000.0) -> np.ndarray:
        """``rate_mbps`` at each time of ``t_ms``, Mbit/s."""
        if not window_ms > 0:
            raise ValueError(f"window_ms must be > 0, got {window_ms!r}")
        t = np.asarray(t_ms, dtype=float)
        got = self.delivered_bytes(t) - self.delivered_bytes(t - window_ms)
        return got / (window_ms * BYTES_PER_MS_PER_MBPS)

    def binned_mbps(self, bin_ms: float = 1000.0) -> np.ndarray:
        """Throughput in consecutive bins over one period, Mbit/s (a last partial bin is
        dropped unless it is the only one)."""
        if not bin_ms > 0:
            raise ValueError(f"bin_ms must be > 0, got {bin_ms!r}")
        n = max(1, int(self.duration_ms // bin_ms))
        edges = np.arange(n + 1, dtype=float) * min(bin_ms, self.duration_ms)
        got = self.delivered_bytes(edges)
        return np.diff(got) / (np.diff(edges) * BYTES_PER_MS_PER_MBPS)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, duration_ms={self.duration_ms:g}, "
                f"mean_mbps={self.mean_mbps():.3f})")


class PacketTrace(BandwidthTrace):
    """A Mahimahi packet-delivery trace, replayed as ``mm-link`` replays it.

    ``timestamps_ms``: non-decreasing integer ms, each one delivery opportunity of
    ``packet_bytes`` bytes; a repeated timestamp is several opportunities in that ms. The
    period is the last timestamp (must be > 0): opportunity ``i`` of pass ``k`` is at
    ``k * period + timestamps_ms[i]`` (``mm-link`` adds the last timestamp to its base at each
    wrap). A send at time ``t`` can use only opportunities strictly after ``t``: ``mm-link``
    burns the opportunities due at or before ``now`` before it enqueues a packet arriving at
    ``now``. Bytes are a stream: ``n`` bytes need ``ceil(n / packet_bytes)`` opportunities and
    are delivered at the last one.
    """

    def __init__(self, timestamps_ms: npt.ArrayLike, *, name: str = "packets",
                 packet_bytes: int = PACKET_BYTES) -> None:
        ts = np.asarray(timestamps_ms)
        if ts.ndim != 1 or ts.size == 0:
            raise GraftInputError(f"trace {name!r}: needs at least one timestamp")
        if not np.all(np.isfinite(ts)) or np.any(ts != np.round(ts)) or np.any(ts < 0):
            raise GraftInputError(f"trace {name!r}: timestamps must be integers >= 0 (ms)")
        if np.any(np.diff(ts) < 0):
            raise GraftInputError(f"trace {name!r}: timestamps must be non-decreasing")
        if ts[-1] <= 0:
            raise GraftInputError(f"trace {name!r}: the last timestamp (the period) must be > 0")
        if packet_bytes <= 0:
            raise GraftInputError(f"trace {name!r}: packet_bytes must be > 0")
        self.name = name
        self.packet_bytes = int(packet_bytes)
        self.timestamps_ms = _frozen(ts, np.int64)
        self._period = int(self.timestamps_ms[-1])
        self._n = int(self.timestamps_ms.size)

    @property
    def duration_ms(self) -> float:
        return float(self._period)

    @property
    def period_bytes(self) -> float:
        return float(self._n * self.packet_bytes)

    def _count_upto(self, t_ms: float) -> int:
        """Opportunities at or before ``t`` (periodic extension; may be negative)."""
        k, x = _split_period(t_ms, self._period)
        return k * self._n + int(np.searchsorted(self.timestamps_ms, x, side="right"))

    def _time_of(self, j: int) -> float:
        """Time of the ``j``-th opportunity (1-based, same numbering as ``_count_upto``)."""
        k, r = divmod(j - 1, self._n)
        return float(k * self._period + int(self.timestamps_ms[r]))

    def _count_upto_many(self, t_ms: np.ndarray) -> np.ndarray:
        """``_count_upto`` of each time (int64)."""
        k, x = _split_period_array(t_ms, float(self._period))
        return k.astype(np.int64) * self._n + np.searchsorted(self.timestamps_ms, x,
                                                              side="right")

    def _time_of_many(self, j: np.ndarray) -> np.ndarray:
        """``_time_of`` of each opportunity number (int64 in, float out)."""
        k, r = np.divmod(j - 1, self._n)
        return (k * self._period + self.timestamps_ms[r]).astype(float)

    def delivered_bytes(self, t_ms: npt.ArrayLike) -> np.ndarray:
        k, x = _split_period_array(np.asarray(t_ms, dtype=float), float(self._period))
        counts = k * self._n + np.searchsorted(self.timestamps_ms, x, side="right")
        return counts * float(self.packet_bytes)

    def transfer_ms(self, nbytes: int, start_ms: float) -> float:
        """Walks the opportunities in Python integers, so any size of ``nbytes`` is exact."""
        _check_transfer_args(nbytes, start_ms)
        if nbytes == 0:
            return 0.0
        if isinstance(nbytes, (int, np.integer)):
            packets = -(-int(nbytes) // self.packet_bytes)
        else:
            packets = math.ceil(nbytes / self.packet_bytes)
        return self._time_of(self._count_upto(start_ms) + packets) - start_ms

    def transfer_ms_many(self, nbytes: npt.ArrayLike, start_ms: npt.ArrayLike) -> np.ndarray:
        """Bytes and opportunity numbers are int64: transfers below about 9e18 bytes."""
        n, start = _transfer_arrays(nbytes, start_ms)
        if n.dtype.kind in "iu":
            packets = -(-n.astype(np.int64) // self.packet_bytes)
        else:
            packets = np.ceil(n / self.packet_bytes).astype(np.int64)
        done = self._time_of_many(self._count_upto_many(start) + packets) - start
        return np.where(n == 0, 0.0, done)


class RateTrace(BandwidthTrace):
    """A piecewise-constant rate: ``rates_mbps[i]`` holds on ``[edges_ms[i], edges_ms[i+1])``.

    ``edges_ms`` starts at 0, strictly increases, and its last value is the period. Rates are
    >= 0 (a zero rate is an outage) and the period must carry some bytes. Bytes delivered are
    the integral of the rate; ``transfer_ms`` inverts that integral (the earliest time the
    bytes are through, so a transfer never waits out an outage it does not need).
    """

    def __init__(self, edges_ms: npt.ArrayLike, rates_mbps: npt.ArrayLike, *,
                 name: str = "rate") -> None:
        edges = np.asarray(edges_ms, dtype=float)
        rates = np.asarray(rates_mbps, dtype=float)
        if rates.ndim != 1 or rates.size == 0 or edges.shape != (rates.size + 1,):
            raise GraftInputError(f"trace {name!r}: needs n >= 1 rates and n + 1 edges")
        if not (np.all(np.isfinite(edges)) and np.all(np.isfinite(rates))):
            raise GraftInputError(f"trace {name!r}: edges and rates must be finite")
        if edges[0] != 0 or np.any(np.diff(edges) <= 0):
            raise GraftInputError(f"trace {name!r}: edges must start at 0 and increase")
        if np.any(rates < 0):
            raise GraftInputError(f"trace {name!r}: rates must be >= 0")
        seg_bytes = rates * BYTES_PER_MS_PER_MBPS * np.diff(edges)
        cum = np.concatenate([[0.0], np.cumsum(seg_bytes)])
        if not cum[-1] > 0:
            raise GraftInputError(
                f"trace {name!r}: the rate is zero over the whole trace, nothing can be sent")
        self.name = name
        self.edges_ms = _frozen(edges, np.float64)
        self.rates_mbps = _frozen(rates, np.float64)
        self._bytes_per_ms = _frozen(rates * BYTES_PER_MS_PER_MBPS, np.float64)
        self._cum = _frozen(cum, np.float64)

    @classmethod
    def from_samples(cls, times_s: npt.ArrayLike, rates_mbps: npt.ArrayLike, *,
                     name: str = "rate") -> RateTrace:
        """Zero-order hold of ``(time_s, Mbit/s)`` samples: each rate holds until the next
        sample's time; the last one holds as long as the step before it (1 s if there is a
        single sample). Times are shifted so the first sample is at 0."""
        times = np.asarray(times_s, dtype=float)
        if times.ndim != 1 or times.size == 0:
            raise GraftInputError(f"trace {name!r}: needs at least one sample")
        last_step = times[-1] - times[-2] if times.size > 1 else 1.0
        edges_s = np.concatenate([times - times[0], [times[-1] - times[0] + last_step]])
        return cls(edges_s * 1000.0, rates_mbps, name=name)

    @property
    def duration_ms(self) -> float:
        return float(self.edges_ms[-1])

    @property
    def period_bytes(self) -> float:
        return float(self._cum[-1])

    def delivered_bytes(self, t_ms: npt.ArrayLike) -> np.ndarray:
        k, x = _split_period_array(np.asarray(t_ms, dtype=float), self.duration_ms)
        last = self.rates_mbps.size - 1
        i = np.clip(np.searchsorted(self.edges_ms, x, side="right") - 1, 0, last)
        return k * self.period_bytes + self._cum[i] + self._bytes_per_ms[i] * (x - self.edges_ms[i])

    def time_at_bytes(self, target: npt.ArrayLike) -> np.ndarray:
        """Earliest time by which ``target`` bytes (counted from time 0 on the periodic
        extension) have been delivered: the inverse of :meth:`delivered_bytes`.

        A target within rounding (``_PLATEAU_EPS`` of a period's bytes) above a level the
        trace holds during an outage counts as reached when the outage starts, not when it
        ends, so float noise in a sum of transfers cannot add an outage's length.
        """
        y = np.asarray(target, dtype=float)
        total = self.period_bytes
        low_y = y - _PLATEAU_EPS * total  # the least target that counts as reached
        k = np.ceil(low_y / total) - 1
        low_y = low_y - k * total
        under, over = low_y <= 0, low_y > total
        k = k - under + over
        low_y = low_y + total * under - total * over
        # Segment i-1 is the first whose end reaches low_y: it has a positive rate.
        i = np.clip(np.searchsorted(self._cum, low_y, side="left"), 1, self.rates_mbps.size)
        y = np.minimum(y - k * total, self._cum[i])
        with np.errstate(divide="ignore", invalid="ignore"):
            inside = self.edges_ms[i - 1] + (y - self._cum[i - 1]) / self._bytes_per_ms[i - 1]
        t = np.clip(inside, self.edges_ms[i - 1], self.edges_ms[i])
        return k * self.duration_ms + t

    def transfer_ms(self, nbytes: int, start_ms: float) -> float:
        _check_transfer_args(nbytes, start_ms)
        return float(self.transfer_ms_many(float(nbytes), start_ms))

    def transfer_ms_many(self, nbytes: npt.ArrayLike, start_ms: npt.ArrayLike) -> np.ndarray:
        n, start = _transfer_arrays(nbytes, start_ms, dtype=float)
        done = self.time_at_bytes(self.delivered_bytes(start) + n) - start
        return np.where((n == 0) | ~(done > 0.0), 0.0, done)  # as max(0.0, done)


# ---------------------------------------------------------------------------------- readers

IPERF_UNITS = {"bits/sec": 1e-6, "kbits/sec": 1e-3, "mbits/sec": 1.0, "gbits/sec": 1e3}
"""iperf's bit-rate units (lower-cased) and their factor to Mbit/s (decimal prefixes)."""

RATE_TIME_HEADERS = ("time", "time_s", "t", "t_s", "s", "sec", "seconds", "timestamp",
                     "timestamp_s")
RATE_VALUE_HEADERS = ("mbps", "mbit/s", "mbit_s", "mbits/sec", "rate", "rate_mbps",
                      "bandwidth", "bandwidth_mbps", "throughput", "throughput_mbps")
IPERF_HEADERS = (("value", "bandwidth", "throughput", "rate"), ("unit", "units"))

_SNIFF_LINES = 64
_INT_LINE = re.compile(r"\s*\d+\s*")


def _error(path: str | Path, lineno: int | None, what: str) -> GraftInputError:
    where = f"{path}:{lineno}" if lineno is not None else f"{path}"
    return GraftInputError(f"{where}: {what}")


def _read_lines(path: str | Path) -> list[str]:
    """The file's lines (without line ends), or a GraftInputError saying why not (a file
    larger than ``limits.INPUT_BYTES`` included)."""
    from graft import limits

    try:
        size = Path(path).stat().st_size
        if size > limits.INPUT_BYTES.value:
            raise limits.INPUT_BYTES.exceeded(
                f"{path}: the trace file is larger than the bound of "
                f"{int(limits.INPUT_BYTES.value)} bytes")
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _error(path, None, f"not a text trace file ({exc.reason})") from None
    except OSError as exc:
        raise _error(path, None, f"cannot read trace file: {exc.strerror or exc}") from None
    lines = text.splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise _error(path, None, "empty trace file")
    return lines


def _csv_rows(lines: list[str]) -> list[tuple[int, list[str]]]:
    """``(line number, fields)`` of the non-blank, non-comment rows; trailing empty fields and
    whitespace around fields are dropped (iperf exports often carry ``,,,`` and ``\\r``)."""
    rows = []
    for lineno, line in enumerate(lines, start=1):
        if line.lstrip().startswith("#"):
            continue
        fields = [f.strip() for f in line.split(",")]
        while fields and not fields[-1]:
            fields.pop()
        if fields:
            rows.append((lineno, fields))
    return rows


def _number(s: str) -> float | None:
    try:
        value = float(s)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _trace_name(path: str | Path) -> str:
    return Path(path).name


def read_mahimahi(path: str | Path, *, packet_bytes: int = PACKET_BYTES) -> PacketTrace:
    """Read a Mahimahi packet-delivery trace: one integer ms timestamp per line."""
    lines = _read_lines(path)
    stripped = [line.strip() for line in lines]
    if not all(map(str.isdecimal, stripped)):
        i = next(i for i, s in enumerate(stripped) if not s.isdecimal())
        what = ("empty line" if not stripped[i]
                else f"not a non-negative integer ms timestamp: {stripped[i]!r}")
        raise _error(path, i + 1, f"{what} (Mahimahi trace: one integer ms timestamp per line)")
    try:
        ts = np.array(list(map(int, stripped)), dtype=np.int64)
    except OverflowError:
        raise _error(path, None, "a timestamp does not fit a 64-bit integer") from None
    down = np.flatnonzero(np.diff(ts) < 0)
    if down.size:
        i = int(down[0]) + 1
        raise _error(path, i + 1, f"timestamp {ts[i]} is before the previous one ({ts[i - 1]}); "
                                  "timestamps must be non-decreasing")
    if ts[-1] == 0:
        raise _error(path, len(lines), "the last timestamp (the trace's period) must be > 0 ms")
    trace = PacketTrace(ts, name=_trace_name(path), packet_bytes=packet_bytes)
    logger.debug("read %s: %d opportunities over %d ms, %.3f Mbit/s", path, ts.size, ts[-1],
                 trace.mean_mbps())
    return trace


def _rate_header(path: str | Path, lineno: int, fields: list[str]) -> None:
    names = [f.lower() for f in fields]
    if len(names) != 2 or names[0] not in RATE_TIME_HEADERS or names[1] not in RATE_VALUE_HEADERS:
        raise _error(path, lineno, f"unrecognised header {','.join(fields)!r}: expected "
                                   f"time in seconds ({'/'.join(RATE_TIME_HEADERS)}) then "
                                   f"Mbit/s ({'/'.join(RATE_VALUE_HEADERS)}), or no header")


def _rate_row(path: str | Path, lineno: int, fields: list[str]) -> tuple[float, float]:
    if len(fields) != 2:
        raise _error(path, lineno, f"expected 2 fields (time_s, Mbit/s), got {len(fields)}")
    t, r = _number(fields[0]), _number(fields[1])
    if t is None:
        raise _error(path, lineno, f"time is not a finite number: {fields[0]!r}")
    if r is None:
        raise _error(path, lineno, f"rate is not a finite number: {fields[1]!r}")
    if r < 0:
        raise _error(path, lineno, f"negative rate {r:g} Mbit/s")
    return t, r


def read_rate_csv(path: str | Path) -> RateTrace:
    """Read a CSV of ``time_s,Mbit/s`` rows, with or without one header row (see
    ``RATE_TIME_HEADERS`` / ``RATE_VALUE_HEADERS``). Each rate holds until the next row's time
    (:meth:`RateTrace.from_samples`)."""
    rows = _csv_rows(_read_lines(path))
    if rows and _number(rows[0][1][0]) is None:
        _rate_header(path, *rows[0])
        rows = rows[1:]
    if not rows:
        raise _error(path, None, "no data rows")
    times, rates = [], []
    for lineno, fields in rows:
        t, r = _rate_row(path, lineno, fields)
        if times and t <= times[-1]:
            raise _error(path, lineno, f"time {t:g} s is not after the previous row's "
                                       f"({times[-1]:g} s); times must increase")
        times.append(t)
        rates.append(r)
    return _build_rate(path, times, rates)


def _build_rate(path: str | Path, times: list[float], rates: list[float]) -> RateTrace:
    try:
        trace = RateTrace.from_samples(times, rates, name=_trace_name(path))
    except GraftInputError as exc:
        raise _error(path, None, str(exc)) from None
    logger.debug("read %s: %d samples over %.1f s, %.3f Mbit/s", path, len(rates),
                 trace.duration_ms / 1000.0, trace.mean_mbps())
    return trace


def _is_iperf_header(fields: list[str]) -> bool:
    names = [f.lower() for f in fields]
    return len(names) == 2 and names[0] in IPERF_HEADERS[0] and names[1] in IPERF_HEADERS[1]


def _iperf_row(path: str | Path, lineno: int, fields: list[str]) -> float:
    if len(fields) != 2:
        raise _error(path, lineno, f"expected 2 fields (value, unit), got {len(fields)}: "
                                   f"{','.join(fields)!r}")
    value = _number(fields[0])
    if value is None:
        raise _error(path, lineno, f"value is not a finite number: {fields[0]!r}")
    if value < 0:
        raise _error(path, lineno, f"negative rate {value:g} {fields[1]}")
    factor = IPERF_UNITS.get(fields[1].lower())
    if factor is None:
        raise _error(path, lineno, f"unknown unit {fields[1]!r}; expected one of "
                                   "bits/sec, Kbits/sec, Mbits/sec, Gbits/sec")
    return value * factor


def read_iperf_csv(path: str | Path, *, skip_bad_rows: bool = False) -> RateTrace:
    """Read per-second iperf rows ``value,unit`` (the unit may change from row to row), with
    or without a ``Value,Unit`` header. Row ``i`` holds on ``[i, i+1)`` s.

    ``skip_bad_rows``: skip rows that are not ``value,unit`` (some exports carry iperf's own
    text, e.g. ``the,connection``), with a warning, instead of failing; the gap closes up.
    """
    rows = _csv_rows(_read_lines(path))
    if rows and _is_iperf_header(rows[0][1]):
        rows = rows[1:]
    rates, skipped = [], []
    for lineno, fields in rows:
        try:
            rates.append(_iperf_row(path, lineno, fields))
        except GraftInputError as exc:
            if not skip_bad_rows:
                raise GraftInputError(f"{exc} (skip_bad_rows=True skips such rows)") from None
            skipped.append(lineno)
    if skipped:
        logger.warning("%s: skipped %d rows that are not value,unit (first: line %d)",
                       path, len(skipped), skipped[0])
    if not rates:
        raise _error(path, None, "no data rows")
    return _build_rate(path, [float(i) for i in range(len(rates))], rates)


def _sniff(path: str | Path) -> str:
    """Which reader fits the file: by extension (``.up``/``.down``), else by its first data row."""
    if Path(path).suffix.lower() in (".up", ".down"):
        return "mahimahi"
    rows = _csv_rows(_read_lines(path)[:_SNIFF_LINES])
    if not rows:
        raise _error(path, None, "no data rows")
    lineno, fields = rows[0]
    if _is_iperf_header(fields):
        return "iperf"
    if len(rows) > 1 and all(_number(f) is None for f in fields):
        lineno, fields = rows[1]  # a header row: look at the first data row
    if len(fields) == 1 and _INT_LINE.fullmatch(fields[0]):
        return "mahimahi"
    if len(fields) == 2 and _number(fields[0]) is not None:
        return "rate" if _number(fields[1]) is not None else "iperf"
    raise _error(path, lineno, "not a known trace format: expected a Mahimahi trace (one "
                               "integer ms per line), time_s,Mbit/s rows or value,unit rows")


def load_trace(path: str | Path, *, skip_bad_rows: bool = False) -> BandwidthTrace:
    """Read a trace, picking the reader from the extension and content: ``.up``/``.down`` or
    integer lines -> Mahimahi; two numbers per row -> rate CSV; a number and a unit -> iperf.
    ``skip_bad_rows`` applies to iperf files (see :func:`read_iperf_csv`)."""
    kind = _sniff(path)
    if kind == "mahimahi":
        return read_mahimahi(path)
    if kind == "rate":
        return read_rate_csv(path)
    return read_iperf_csv(path, skip_bad_rows=skip_bad_rows)
