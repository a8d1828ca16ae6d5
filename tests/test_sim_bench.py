"""bench/sim_bench.py on small generated traces (never ../shared): scenarios build, run and
report; missing traces stop it with a message."""

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "sim_bench.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("sim_bench", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def make_traces(root: Path) -> None:
    mm = root / "mahimahi-cellular"
    mm.mkdir(parents=True)
    # one 1500-byte opportunity every ms = 12 Mbit/s; every other ms = 6 Mbit/s
    (mm / "Fake-LTE-a.up").write_text("".join(f"{t}\n" for t in range(1, 5001)))
    (mm / "Fake-LTE-b.up").write_text("".join(f"{t}\n" for t in range(2, 5001, 2)))
    (mm / "Fake-UMTS.up").write_text("".join(f"{t}\n" for t in range(100, 5001, 100)))
    (mm / "Fake-LTE-a.down").write_text("1\n2\n")
    nyu = root / "nyu-mets-lte" / "Bus"
    nyu.mkdir(parents=True)
    (nyu / "bus.csv").write_text("".join(f"{4 + i % 5}.0,Mbits/sec\n" for i in range(60))
                                 + "[  4] local 10.0.0.1 port 5201\n"
                                 + "".join("800,Kbits/sec\n" for _ in range(10)))
    (nyu / "iperf").write_text("-----\nServer listening on 5201\n-----\n")


def test_builder_and_report_on_generated_traces(bench, tmp_path):
    make_traces(tmp_path)
    src = bench.trace_sources(tmp_path)
    assert [Path(p).name for p, _ in src["mahimahi-lte"]] == ["Fake-LTE-a.up", "Fake-LTE-b.up"]
    assert src["nyu-mets"] == [(str((tmp_path / "nyu-mets-lte").resolve()), 1)]
    sc = bench.build_scenario("mahimahi-lte", "resnet50", src["mahimahi-lte"], duration_s=4)
    assert sc.num_clients == 2 * bench.CLIENTS_PER_TRACE * len(bench.DEVICES)
    assert {(g.activation_bytes_per_value, g.input_bytes) for g in sc.clients} == \
        {(1.0, 25088.0)}
    assert all(Path(g.trace).is_absolute() for g in sc.clients)
    results = bench.run_all(tmp_path, 4.0, models=("mobilenet_v2",), log=lambda s: None)
    assert set(results) == {("mahimahi-lte", "mobilenet_v2"), ("nyu-mets", "mobilenet_v2")}
    for _, runs, _ in results.values():
        assert set(runs) == set(bench.PLANNERS)
        assert len({r.requests for r in runs.values()}) == 1
        assert runs["graft"].requests > 0
    text = bench.report(results, duration_s=4.0, command="test", total_wall=1.0)
    for needle in ("## mahimahi-lte", "## nyu-mets", "ratio to gslice", "## Simulator speed",
                   "## Targets", "**overall**"):
        assert needle in text


def test_jpeg_bytes_follow_the_input_size(bench):
    assert bench.jpeg_bytes("resnet50") == 25088
    assert bench.jpeg_bytes("inception_v3") == 44701


def test_missing_traces_stop_with_a_message(bench, tmp_path):
    with pytest.raises(SystemExit, match="real traces not found"):
        bench.trace_sources(tmp_path / "nowhere")
