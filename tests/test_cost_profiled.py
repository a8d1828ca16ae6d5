"""The profiled cost model: sums of measured blocks, interpolation, errors, the shipped profile."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graft.cost.base import CostModel, grid_from_scalar
from graft.cost.profiled import ProfileCostModel
from graft.cost.registry import make_cost_model
from graft.errors import GraftInputError, UnknownNameError
from graft.models.catalog import get_model

BATCHES = [1, 2, 4, 8]
SHARES = [0.25, 0.5, 1.0]


def toy_profile(blocks: int = 3) -> dict:
    """Block b at batch B, share g: (b + 1) * (1 + B) / g ms (exactly linear in B)."""
    return {
        "format": "graft-profile",
        "version": 1,
        "device": {"kind": "cpu", "cores": 4},
        "limits": {"memory_bytes": 8 << 30, "context_bytes": 1 << 28, "max_processes": 4},
        "batches": BATCHES,
        "shares": SHARES,
        "models": {
            "toy": {
                "blocks": [
                    {
                        "name": f"b{b}",
                        "latency_ms": [[(b + 1) * (1 + B) / g for g in SHARES] for B in BATCHES],
                    }
                    for b in range(blocks)
                ]
            }
        },
    }


@pytest.fixture
def toy() -> ProfileCostModel:
    return ProfileCostModel(toy_profile(), name="profile:toy")


def test_protocol_grids_and_limits(toy: ProfileCostModel) -> None:
    assert isinstance(toy, CostModel)
    assert toy.batches == tuple(BATCHES) and toy.shares == tuple(SHARES)
    assert toy.limits.memory_bytes == 8 << 30 and toy.limits.max_processes == 4
    assert toy.models == ["toy"] and toy.num_blocks("toy") == 3


def test_stage_is_the_sum_of_its_blocks(toy: ProfileCostModel) -> None:
    # blocks 1 and 2: (2 + 3) * (1 + 4) / 0.5
    assert toy.latency_ms("toy", 1, 3, 4, 0.5) == pytest.approx(50.0)
    whole = toy.latency_grid("toy", 0, 3)
    parts = toy.latency_grid("toy", 0, 1) + toy.latency_grid("toy", 1, 3)
    np.testing.assert_allclose(whole, parts, rtol=1e-12)


def test_grid_equals_pointwise_and_is_cached(toy: ProfileCostModel) -> None:
    grid = toy.latency_grid("toy", 0, 2)
    assert grid is toy.latency_grid("toy", 0, 2) and not grid.flags.writeable
    np.testing.assert_array_equal(grid, grid_from_scalar(toy, "toy", 0, 2))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 8), st.sampled_from(SHARES), st.integers(0, 2), st.integers(1, 3))
def test_batches_between_measured_ones_interpolate_linearly(b, g, s, length) -> None:
    cost = ProfileCostModel(toy_profile())
    e = min(3, s + length)
    expected = sum(k + 1 for k in range(s, e)) * (1 + b) / g
    assert cost.latency_ms("toy", s, e, b, g) == pytest.approx(expected, rel=1e-12)


def test_interpolation_weights() -> None:
    data = toy_profile(1)
    data["models"]["toy"]["blocks"][0]["latency_ms"][2] = [10.0, 10.0, 10.0]  # batch 4
    data["models"]["toy"]["blocks"][0]["latency_ms"][3] = [30.0, 30.0, 30.0]  # batch 8
    cost = ProfileCostModel(data)
    assert cost.latency_ms("toy", 0, 1, 5, 1.0) == pytest.approx(15.0)
    assert cost.latency_ms("toy", 0, 1, 7, 0.25) == pytest.approx(25.0)


def test_errors_name_the_range_and_the_grid(toy: ProfileCostModel) -> None:
    with pytest.raises(GraftInputError, match=r"outside the measured range \[1, 8\]"):
        toy.latency_ms("toy", 0, 3, 9, 0.5)
    with pytest.raises(GraftInputError, match="0.25, 0.5, 1"):
        toy.latency_ms("toy", 0, 3, 2, 0.3)
    with pytest.raises(GraftInputError, match="batch"):
        toy.latency_ms("toy", 0, 3, 0, 0.5)
    with pytest.raises(GraftInputError, match="share"):
        toy.latency_ms("toy", 0, 3, 1, 1.5)
    with pytest.raises(GraftInputError, match="segment"):
        toy.latency_grid("toy", 2, 2)
    with pytest.raises(UnknownNameError, match="toy"):
        toy.latency_ms("resnet50", 0, 1, 1, 0.5)


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: d.update(version=2), "version"),
        (lambda d: d.update(batches=[2, 1, 4, 8]), "increasing"),
        (lambda d: d.update(shares=[0.0, 0.5, 1.0]), r"\(0, 1\]"),
        (lambda d: d["models"]["toy"]["blocks"][0].update(latency_ms=[[1.0]]), "4 x 3"),
        (lambda d: d["models"]["toy"]["blocks"][1]["latency_ms"][0].__setitem__(0, -1), ">= 0"),
        (lambda d: d.pop("limits"), "limits"),
        (lambda d: d.update(models={}), "models"),
    ],
)
def test_malformed_profiles_are_rejected(mutate, match) -> None:
    data = toy_profile()
    mutate(data)
    with pytest.raises(GraftInputError, match=match):
        ProfileCostModel(data, source="bad.json")


def test_stale_block_count_is_rejected() -> None:
    data = toy_profile(get_model("resnet50").num_blocks - 1)
    data["models"] = {"resnet50": data["models"]["toy"]}
    with pytest.raises(GraftInputError, match="stale"):
        ProfileCostModel(data)


def test_files_and_registry(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(toy_profile()))
    cost = make_cost_model(f"profile:{path}")
    assert cost.name == f"profile:{path}"
    assert cost is make_cost_model(f"profile:{path}")
    assert cost.latency_ms("toy", 0, 1, 1, 1.0) == pytest.approx(2.0)
    missing = tmp_path / "missing.json"
    with pytest.raises(GraftInputError, match=str(missing)):
        make_cost_model(f"profile:{missing}")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(GraftInputError, match=str(broken)):
        make_cost_model(f"profile:{broken}")


def test_shipped_tiny_cpu_profile() -> None:
    cost = make_cost_model("profile:tiny-cpu")
    n = get_model("tiny").num_blocks
    assert cost.name == "profile:tiny-cpu"
    assert cost.batches == (1, 2, 4, 8, 16) and cost.shares == (0.5, 1.0)
    grid = cost.latency_grid("tiny", 0, n)
    assert grid.shape == (5, 2) and np.all(grid > 0)
    assert cost.latency_ms("tiny", 0, n, 3, 1.0) > 0


def test_scale_multiplies_every_time(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps(toy_profile()))
    plain = make_cost_model(f"profile:{path}")
    slow = make_cost_model(f"profile:{path},scale=1.5")
    assert slow.name == f"profile:{path},scale=1.5" and slow.scale == 1.5
    assert np.allclose(slow.latency_grid("toy", 0, 3), 1.5 * plain.latency_grid("toy", 0, 3))
    assert slow.latency_ms("toy", 1, 2, 3, 0.5) == pytest.approx(
        1.5 * plain.latency_ms("toy", 1, 2, 3, 0.5))
    shipped = make_cost_model("profile:tiny-cpu,scale=2")
    assert shipped.latency_ms("tiny", 0, 1, 1, 1.0) == pytest.approx(
        2 * make_cost_model("profile:tiny-cpu").latency_ms("tiny", 0, 1, 1, 1.0))
    for bad in ("x", "0", "-1", "nan", "inf", "1e9"):
        with pytest.raises(GraftInputError, match="scale"):
            make_cost_model(f"profile:{path},scale={bad}")
