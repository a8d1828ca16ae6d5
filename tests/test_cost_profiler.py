"""The profiler measures tiny on the CPU and writes a profile the profiled cost model reads."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("torch")

from graft.cost.profiled import ProfileCostModel  # noqa: E402
from graft.cost.profiler import cpu_cores, merge_profiles, profile_model, write_profile  # noqa: E402
from graft.errors import GraftInputError  # noqa: E402
from graft.models.catalog import get_model  # noqa: E402

pytestmark = pytest.mark.torch


def test_profile_tiny_on_cpu_round_trips(tmp_path: Path) -> None:
    seen: list[str] = []
    result = profile_model(
        "tiny",
        batches=(1, 2),
        shares=(1.0,),
        warmup=1,
        repeats=2,
        progress=seen.append,
    )
    assert seen == ["tiny share=1 batch=1 (1/2)", "tiny share=1 batch=2 (2/2)"]
    assert result["batches"] == [1, 2] and result["shares"] == [1.0]
    blocks = result["models"]["tiny"]["blocks"]
    assert [b["name"] for b in blocks] == [b.name for b in get_model("tiny").blocks]
    path = tmp_path / "tiny.json"
    write_profile(result, path)
    cost = ProfileCostModel.from_file(path)
    n = get_model("tiny").num_blocks
    assert cost.latency_ms("tiny", 0, n, 2, 1.0) > 0
    assert cost.limits.max_processes == cpu_cores()


def test_default_shares_are_core_fractions() -> None:
    result = profile_model("tiny", batches=(1,), warmup=0, repeats=1)
    cores = cpu_cores()
    assert result["shares"] == [round(k / cores, 6) for k in range(1, cores + 1)]
    assert merge_profiles([result, result])["models"].keys() == {"tiny"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batches": (2, 1)},
        {"batches": (0,)},
        {"shares": (0.0,)},
        {"shares": (1.0, 0.5)},
        {"repeats": 0},
        {"device": "tpu"},
    ],
)
def test_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(GraftInputError):
        profile_model("tiny", **kwargs)


def test_cuda_path_runs_one_worker_per_mps_share(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA orchestration, with the GPU worker faked: one process per share, MPS env set."""
    import json
    import subprocess

    from graft.cost import profiler

    n = get_model("tiny").num_blocks
    calls: list[tuple[str, list[str]]] = []

    def fake_run(cmd: list[str], env: dict, **_: object) -> subprocess.CompletedProcess:
        pct = env[profiler.MPS_ENV]
        calls.append((pct, cmd))
        batches = [int(b) for b in cmd[cmd.index("--batches") + 1].split(",")]
        out = {
            "latency_ms": [[float(pct) * b + k for b in batches] for k in range(n)],
            "block_names": [f"b{k}" for k in range(n)],
            "gpu_name": "Fake GPU",
            "memory_bytes": 1 << 34,
            "mps_percentage": pct,
        }
        Path(cmd[cmd.index("--out") + 1]).write_text(json.dumps(out))
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(profiler.subprocess, "run", fake_run)
    monkeypatch.setattr(profiler, "mps_daemon_running", lambda: True)
    result = profile_model("tiny", device="cuda", batches=(1, 4), shares=(0.25, 1.0))
    assert [c[0] for c in calls] == ["25", "100"]
    assert all(c[1][1:4] == ["-m", "graft.cost.profiler", "--worker"] for c in calls)
    assert result["device"]["kind"] == "cuda" and result["device"]["mps_daemon"] is True
    assert result["limits"]["max_processes"] == 48
    block0 = result["models"]["tiny"]["blocks"][0]
    assert block0["name"] == "b0"
    assert block0["latency_ms"] == [[25.0, 100.0], [100.0, 400.0]]  # [batch][share]
    ProfileCostModel(result)  # a valid profile


def test_worker_needs_a_gpu() -> None:
    import torch

    from graft.cost.profiler import worker

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(GraftInputError, match="CUDA"):
        worker("tiny", [1], 0, 1, 0, True)
