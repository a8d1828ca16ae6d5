"""Bandwidth traces: readers, transfer-time walking, the synthetic generator, the writers.

Every trace here is generated in tmp_path; nothing reads ../shared.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graft.errors import GraftInputError
from graft.workload.tracegen import (
    LTE_UPLINK,
    LinkState,
    MarkovRateModel,
    markov_trace,
    packet_timestamps,
    write_mahimahi,
    write_rate_csv,
)
from graft.workload.traces import (
    PacketTrace,
    RateTrace,
    load_trace,
    read_iperf_csv,
    read_mahimahi,
    read_rate_csv,
)


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _per_ms(n: int) -> PacketTrace:
    """One opportunity per ms at 1..n: 12 Mbit/s, period n ms."""
    return PacketTrace(np.arange(1, n + 1))


def _const(mbps: float, seconds: float = 1.0) -> RateTrace:
    return RateTrace([0.0, seconds * 1000.0], [mbps])


# ------------------------------------------------------------------------------ readers


def test_read_mahimahi_counts_duplicates_and_takes_last_as_period(tmp_path: Path) -> None:
    path = _write(tmp_path, "link.up", "2\n2\n2\n4\n\n")
    trace = read_mahimahi(path)
    assert trace.duration_ms == 4.0
    assert trace.period_bytes == 4 * 1500
    assert trace.mean_mbps() == pytest.approx(4 * 1500 * 8 / 4 / 1000)
    assert trace.name == "link.up"


def test_read_mahimahi_accepts_crlf(tmp_path: Path) -> None:
    trace = read_mahimahi(_write(tmp_path, "crlf.down", "1\r\n2\r\n3\r\n"))
    assert trace.timestamps_ms.tolist() == [1, 2, 3]


def test_read_rate_csv_with_and_without_header(tmp_path: Path) -> None:
    plain = read_rate_csv(_write(tmp_path, "a.csv", "0,1.0\n1,3.0\n2,0\n"))
    text = "# a comment\nTime_s,Mbps\n0,1.0\n1,3.0\n2,0\n"
    headed = read_rate_csv(_write(tmp_path, "b.csv", text))
    for trace in (plain, headed):
        assert trace.edges_ms.tolist() == [0.0, 1000.0, 2000.0, 3000.0]
        assert trace.rates_mbps.tolist() == [1.0, 3.0, 0.0]
        assert trace.mean_mbps() == pytest.approx(4.0 / 3)


def test_read_rate_csv_shifts_to_zero_and_last_row_holds_one_step(tmp_path: Path) -> None:
    trace = read_rate_csv(_write(tmp_path, "r.csv", "10.0,2\n10.5,4\n"))
    assert trace.edges_ms.tolist() == [0.0, 500.0, 1000.0]


def test_read_rate_csv_zero_rate_stretch(tmp_path: Path) -> None:
    trace = read_rate_csv(_write(tmp_path, "out.csv", "0,8\n1,0\n2,0\n3,8\n"))
    assert trace.transfer_ms(1_000_000, 0.0) == pytest.approx(1000.0)
    assert trace.transfer_ms(1_000_000, 1000.0) == pytest.approx(3000.0)  # waits out the outage


def test_read_iperf_units_vary_per_row(tmp_path: Path) -> None:
    text = ("Value,Unit\r\n1.5,Mbits/sec\r\n500,Kbits/sec,,,\r\n250000,bits/sec\r\n"
            "0.001,GBITS/SEC\r\n,,,,\r\n0,bits/sec\r\n")
    trace = read_iperf_csv(_write(tmp_path, "bus.csv", text))
    assert trace.rates_mbps.tolist() == pytest.approx([1.5, 0.5, 0.25, 1.0, 0.0])
    assert trace.edges_ms.tolist() == [0.0, 1000.0, 2000.0, 3000.0, 4000.0, 5000.0]


def test_read_iperf_skip_bad_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path, "m15.csv", "2,Mbits/sec\nthe,connection\nconnected,to,x,port,1\n"
                                       "4,Mbits/sec\n")
    with pytest.raises(GraftInputError, match=r"m15\.csv:2:"):
        read_iperf_csv(path)
    with caplog.at_level(logging.WARNING):
        trace = read_iperf_csv(path, skip_bad_rows=True)
    assert trace.rates_mbps.tolist() == [2.0, 4.0]
    assert "skipped 2 rows" in caplog.text


@pytest.mark.parametrize(("name", "text", "kind", "mean"), [
    ("trace.up", "1\n2\n", PacketTrace, 12.0),
    ("noext", "1\n1\n2\n", PacketTrace, 18.0),
    ("r.csv", "time,mbps\n0,2\n1,4\n", RateTrace, 3.0),
    ("r.txt", "0,2\n1,4\n", RateTrace, 3.0),
    ("i.csv", "2,Mbits/sec\n4000,Kbits/sec\n", RateTrace, 3.0),
    ("h.csv", "Value,Unit\n2,Mbits/sec\n4,Mbits/sec\n", RateTrace, 3.0),
])
def test_load_trace_picks_the_reader(tmp_path: Path, name: str, text: str, kind: type,
                                     mean: float) -> None:
    trace = load_trace(_write(tmp_path, name, text))
    assert isinstance(trace, kind)
    assert trace.mean_mbps() == pytest.approx(mean)


BAD_FILES = [
    # (file name, content, line named in the error or None, words in the message)
    ("a.up", "1\n2\nx3\n4\n", 3, "integer"),
    ("b.up", "1\n5\n4\n", 3, "non-decreasing"),
    ("c.up", "1\n\n2\n", 2, "empty line"),
    ("d.up", "1.5\n2\n", 1, "integer"),
    ("e.up", "-1\n2\n", 1, "integer"),
    ("f.up", "0\n0\n", 2, "must be > 0"),
    ("g.up", "1\n99999999999999999999\n", None, "64-bit"),
    ("empty.up", "", None, "empty"),
    ("blank.csv", "\n\n  \n", None, "empty"),
    ("r1.csv", "0,1\n1,-2\n", 2, "negative rate"),
    ("r2.csv", "0,1\nabc,2\n", 2, "time is not"),
    ("r3.csv", "0,1\n2,1\n1,1\n", 3, "times must increase"),
    ("r4.csv", "time_ms,kbps\n0,1\n", 1, "unrecognised header"),
    ("r5.csv", "0,1\n1,2,3\n", 2, "expected 2 fields"),
    ("r6.csv", "0,1\n1,nan\n", 2, "rate is not"),
    ("r7.csv", "0,0\n1,0\n", None, "zero over the whole trace"),
    ("i1.csv", "1,Mbits/sec\n2,Mbytes/sec\n", 2, "unknown unit"),
    ("i2.csv", "Value,Unit\n1,Mbits/sec\n-1,Kbits/sec\n", 3, "negative rate"),
    ("i3.csv", "Value,Unit\n1,Mbits/sec\nthe,connection\n", 3, "value is not"),
    ("i4.csv", "0,bits/sec\n0,Kbits/sec\n", None, "zero over the whole trace"),
    ("i5.csv", "Value,Unit\n", None, "no data rows"),
    ("u.csv", "hello world\n", 1, "not a known trace format"),
]


@pytest.mark.parametrize(("name", "text", "line", "words"), BAD_FILES)
def test_malformed_files_name_file_and_line(tmp_path: Path, name: str, text: str,
                                            line: int | None, words: str) -> None:
    path = _write(tmp_path, name, text)
    with pytest.raises(GraftInputError) as info:
        load_trace(path)
    message = str(info.value)
    assert message.startswith(f"{path}:" if line is None else f"{path}:{line}:")
    assert words in message


def test_unreadable_files_are_input_errors(tmp_path: Path) -> None:
    with pytest.raises(GraftInputError, match="cannot read"):
        load_trace(tmp_path / "missing.up")
    binary = tmp_path / "bin.up"
    binary.write_bytes(b"\xff\xfe\x00\x81")
    with pytest.raises(GraftInputError, match="not a text"):
        load_trace(binary)


# ------------------------------------------------------------------------- transfer_ms


def test_constant_rate_hand_checked() -> None:
    trace = _const(1.0)
    assert trace.transfer_ms(125_000, 0.0) == pytest.approx(1000.0)
    assert trace.transfer_ms(125_000, 123.4) == pytest.approx(1000.0)
    assert trace.transfer_ms(0, 50.0) == 0.0
    assert trace.transfer_ms(125_000 * 1000, 0.0) == pytest.approx(1_000_000.0)


def test_packet_trace_hand_checked() -> None:
    trace = _per_ms(100)
    assert trace.mean_mbps() == pytest.approx(12.0)
    assert trace.transfer_ms(15_000, 0.0) == 10.0
    assert trace.transfer_ms(15_000, 5.0) == 10.0  # the opportunity at 5 is burned: 6..15
    assert trace.transfer_ms(15_000, 5.5) == 9.5
    assert trace.transfer_ms(15_001, 0.0) == 11.0  # a partial packet takes a whole opportunity
    assert trace.transfer_ms(15_000, 95.0) == 10.0  # 96..100, then 101..105 of the next pass


def test_packet_trace_wraps_across_a_gap() -> None:
    trace = PacketTrace(list(range(1, 51)) + [100])  # 1..50, nothing until 100, period 100
    assert trace.transfer_ms(10 * 1500, 45.0) == 104.0 - 45.0  # 46..50, 100, 101..104


def test_packet_trace_duplicate_timestamps() -> None:
    trace = PacketTrace([2, 2, 2, 4])
    assert trace.transfer_ms(4500, 0.0) == 2.0
    assert trace.transfer_ms(4501, 0.0) == 4.0
    assert trace.transfer_ms(3000, 2.0) == 4.0  # 4, then 6 (next pass's first at 2)


def test_long_transfer_spans_many_periods_quickly() -> None:
    trace = _per_ms(100_000)
    assert trace.transfer_ms(10**12, 0.0) == float(-(-(10**12) // 1500))
    rates = markov_trace(600, seed=3)
    t = rates.transfer_ms(10**12, 17.0)
    assert t == pytest.approx(10**12 / (rates.mean_mbps() * 125.0), rel=1e-3)


def test_rate_trace_outage_and_wraparound() -> None:
    trace = RateTrace([0, 1000, 2000, 3000], [1.0, 0.0, 1.0])  # up, down, up
    assert trace.transfer_ms(125_000, 500.0) == pytest.approx(2000.0)  # crosses the outage
    assert trace.transfer_ms(125_000, 1500.0) == pytest.approx(1500.0)  # starts in it
    assert trace.transfer_ms(125_000, 0.0) == pytest.approx(1000.0)  # done when it starts
    assert trace.transfer_ms(125_000, 2500.0) == pytest.approx(1000.0)  # wraps to next pass


def test_walking_the_trace_is_not_the_mean() -> None:
    trace = RateTrace([0, 1000, 2000], [10.0, 1.0])  # fast, then slow
    one_mbit = 125_000
    from_mean = one_mbit / (trace.mean_mbps() * 125.0)
    assert from_mean == pytest.approx(181.8, abs=0.1)
    assert trace.transfer_ms(one_mbit, 0.0) == pytest.approx(100.0)
    assert trace.transfer_ms(one_mbit, 1000.0) == pytest.approx(1000.0)
    assert trace.transfer_ms(one_mbit, 950.0) == pytest.approx(50.0 + 500.0)


def test_rate_mbps_window() -> None:
    trace = RateTrace([0, 1000, 2000], [10.0, 1.0])
    assert trace.rate_mbps(1000.0) == pytest.approx(10.0)
    assert trace.rate_mbps(2000.0) == pytest.approx(1.0)
    assert trace.rate_mbps(1500.0) == pytest.approx(5.5)
    assert trace.rate_mbps(500.0, window_ms=1000.0) == pytest.approx(5.5)  # reads last pass
    assert _per_ms(100).rate_mbps(50.0, window_ms=10.0) == pytest.approx(12.0)
    assert trace.binned_mbps().tolist() == pytest.approx([10.0, 1.0])


def test_bad_transfer_arguments() -> None:
    with pytest.raises(ValueError):
        _const(1.0).transfer_ms(-1, 0.0)
    with pytest.raises(ValueError):
        _per_ms(10).transfer_ms(1, float("nan"))


# ----------------------------------------------------------------------------- properties


@st.composite
def rate_traces(draw: st.DrawFn) -> RateTrace:
    n = draw(st.integers(1, 6))
    steps = draw(st.lists(st.floats(1.0, 1000.0), min_size=n, max_size=n))
    rates = draw(st.lists(st.one_of(st.just(0.0), st.floats(0.01, 100.0)), min_size=n,
                          max_size=n))
    if not any(rates):
        rates[draw(st.integers(0, n - 1))] = 1.0
    return RateTrace(np.concatenate([[0.0], np.cumsum(steps)]), rates)


@st.composite
def packet_traces(draw: st.DrawFn, distinct: bool) -> PacketTrace:
    if distinct:  # also no 0: the period's last opportunity would coincide with the next first
        ts = draw(st.lists(st.integers(1, 300), min_size=1, max_size=40, unique=True))
    else:
        ts = draw(st.lists(st.integers(0, 60), min_size=1, max_size=40))
        ts.append(max(max(ts), 1))
    return PacketTrace(sorted(ts))


nbytes = st.integers(0, 3_000_000)
starts = st.floats(0.0, 50_000.0)


@settings(max_examples=150, deadline=None)
@given(trace=st.one_of(rate_traces(), packet_traces(distinct=False)), a=nbytes, b=nbytes,
       t=starts)
def test_transfer_is_monotone_in_bytes(trace, a: int, b: int, t: float) -> None:
    assert trace.transfer_ms(a, t) <= trace.transfer_ms(a + b, t)


@settings(max_examples=150, deadline=None)
@given(trace=rate_traces(), a=nbytes, b=nbytes, t=starts)
def test_rate_transfer_splits_at_any_byte(trace: RateTrace, a: int, b: int, t: float) -> None:
    first = trace.transfer_ms(a, t)
    split = first + trace.transfer_ms(b, t + first)
    whole = trace.transfer_ms(a + b, t)
    assert split == pytest.approx(whole, rel=1e-7, abs=1e-6)


@settings(max_examples=150, deadline=None)
@given(trace=packet_traces(distinct=True), packets=st.integers(0, 2000), b=nbytes, t=starts)
def test_packet_transfer_splits_at_packet_boundaries(trace: PacketTrace, packets: int, b: int,
                                                     t: float) -> None:
    a = packets * 1500
    first = trace.transfer_ms(a, t)
    assert first + trace.transfer_ms(b, t + first) == pytest.approx(trace.transfer_ms(a + b, t))


@settings(max_examples=150, deadline=None)
@given(trace=packet_traces(distinct=False), packets=st.integers(0, 2000), b=nbytes, t=starts)
def test_packet_split_never_faster_with_duplicates(trace: PacketTrace, packets: int, b: int,
                                                   t: float) -> None:
    # A send arriving at t cannot use opportunities already due at t (mm-link burns them).
    a = packets * 1500
    first = trace.transfer_ms(a, t)
    assert first + trace.transfer_ms(b, t + first) >= trace.transfer_ms(a + b, t) - 1e-9


@settings(max_examples=100, deadline=None)
@given(trace=st.one_of(rate_traces(), packet_traces(distinct=False)),
       sizes=st.lists(nbytes, min_size=1, max_size=12),
       times=st.lists(st.floats(-20_000.0, 50_000.0), min_size=12, max_size=12),
       window=st.floats(0.5, 5000.0))
def test_many_equals_one_at_a_time(trace, sizes: list[int], times: list[float],
                                   window: float) -> None:
    # exactly equal: the array walks compute the scalar walks' numbers
    t = times[: len(sizes)]
    many = trace.transfer_ms_many(np.array(sizes), np.array(t))
    assert many.tolist() == [trace.transfer_ms(n, x) for n, x in zip(sizes, t)]
    halves = [n + 0.5 for n in sizes]  # float sizes: whole packets, plain bytes
    assert trace.transfer_ms_many(halves, t).tolist() == \
        [trace.transfer_ms(n, x) for n, x in zip(halves, t)]
    assert trace.rate_mbps_many(times, window).tolist() == \
        [trace.rate_mbps(x, window) for x in times]


def test_many_broadcasts_and_checks_every_entry() -> None:
    trace = _per_ms(100)
    assert trace.transfer_ms_many(15_000, [0.0, 5.0, 95.0]).tolist() == [10.0, 10.0, 10.0]
    assert trace.transfer_ms_many([0, 15_001], 0.0).tolist() == [0.0, 11.0]
    with pytest.raises(ValueError, match="nbytes"):
        trace.transfer_ms_many([1, -1], [0.0, 0.0])
    with pytest.raises(ValueError, match="start_ms"):
        _const(1.0).transfer_ms_many([1, 1], [0.0, float("inf")])
    with pytest.raises(ValueError, match="window_ms"):
        trace.rate_mbps_many([1.0], 0.0)


# ------------------------------------------------------------------- generator and writers


def test_generator_is_deterministic_for_a_seed() -> None:
    a, b, c = markov_trace(300, seed=7), markov_trace(300, seed=7), markov_trace(300, seed=8)
    assert np.array_equal(a.rates_mbps, b.rates_mbps)
    assert not np.array_equal(a.rates_mbps, c.rates_mbps)
    assert a.duration_ms == 300_000.0
    assert np.all(np.diff(a.edges_ms) == 1000.0)


def test_generator_long_run_mean_near_configured() -> None:
    trace = markov_trace(50_000, seed=1)
    assert LTE_UPLINK.mean_mbps() == pytest.approx(2.7, abs=0.05)
    assert trace.mean_mbps() == pytest.approx(LTE_UPLINK.mean_mbps(), rel=0.05)
    assert LTE_UPLINK.stationary().sum() == pytest.approx(1.0)


def test_generator_model_checks() -> None:
    bad = MarkovRateModel((LinkState("a", 1.0), LinkState("b", 2.0)), ((0.5, 0.6), (0.5, 0.5)))
    with pytest.raises(ValueError, match="sum"):
        bad.generate(10)
    two = MarkovRateModel((LinkState("a", 1.0), LinkState("b", 3.0)), ((0.5, 0.5), (0.5, 0.5)),
                          sigma=0.0)
    assert two.mean_mbps() == pytest.approx(2.0)
    assert set(two.generate(100, seed=2).rates_mbps.tolist()) <= {1.0, 3.0}


def test_rate_csv_round_trip_is_exact(tmp_path: Path) -> None:
    uneven = RateTrace([0.0, 300.0, 1000.0, 1250.5], [2.0, 0.0, 7.5])
    for trace in (uneven, markov_trace(120, seed=4)):
        path = tmp_path / "t.csv"
        write_rate_csv(trace, path)
        back = read_rate_csv(path)
        assert back.duration_ms == pytest.approx(trace.duration_ms)
        for t in (0.0, 100.0, 1249.0, 5000.0):
            assert back.delivered_bytes(t) == pytest.approx(trace.delivered_bytes(t))


def test_constant_12_mbps_is_one_packet_per_ms() -> None:
    assert packet_timestamps(_const(12.0, seconds=0.05)).tolist() == list(range(1, 51))


def test_mahimahi_round_trip_preserves_mean(tmp_path: Path) -> None:
    """RateTrace -> Mahimahi file -> PacketTrace keeps the mean within one packet per period
    (bytes short of a whole packet are dropped) plus the period's rounding to a whole ms."""
    trace = markov_trace(60, seed=5)
    path = tmp_path / "gen.up"
    write_mahimahi(trace, path)
    back = load_trace(path)
    assert isinstance(back, PacketTrace)
    assert back.duration_ms == trace.duration_ms
    one_packet_mbps = 1500 / (trace.duration_ms * 125.0)
    assert abs(back.mean_mbps() - trace.mean_mbps()) <= one_packet_mbps + 1e-9
    # and transfer times agree up to packet granularity on this trace
    for start in (0.0, 12_345.6, 59_000.0):
        want = trace.transfer_ms(2_000_000, start)
        assert back.transfer_ms(2_000_000, start) == pytest.approx(want, rel=0.05, abs=500.0)
