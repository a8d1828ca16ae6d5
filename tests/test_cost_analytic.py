"""The analytic GPU cost model: the properties planners rely on, grids, errors, registry."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graft.cost.analytic import EFFICIENCY, AnalyticCostModel
from graft.cost.base import (
    DEFAULT_BATCHES,
    MPS_MAX_CLIENTS,
    PERCENT_SHARES,
    CostModel,
    grid_from_scalar,
)
from graft.cost.devices import GPUS
from graft.cost.registry import cost_model_names, make_cost_model
from graft.errors import GraftInputError, UnknownNameError
from graft.models.catalog import get_model, model_names

PRESETS = tuple(GPUS)
MODELS = tuple(model_names())


def cost(gpu: str) -> AnalyticCostModel:
    return make_cost_model(f"analytic:{gpu}")  # cached: grids persist across examples


@st.composite
def segments(draw: st.DrawFn) -> tuple[str, str, int, int]:
    gpu = draw(st.sampled_from(PRESETS))
    model = draw(st.sampled_from(MODELS))
    n = get_model(model).num_blocks
    start = draw(st.integers(0, n - 1))
    end = draw(st.integers(start + 1, n))
    return gpu, model, start, end


batches = st.integers(1, 256)
shares = st.floats(0.005, 1.0, allow_nan=False)
PROPS = settings(max_examples=60, deadline=None)


def test_protocol_and_grids() -> None:
    c = cost("v100")
    assert isinstance(c, CostModel)
    assert c.name == "analytic:v100"
    assert c.shares == PERCENT_SHARES and c.batches == DEFAULT_BATCHES
    assert c.limits.max_processes == MPS_MAX_CLIENTS
    assert c.limits.memory_bytes == 16 * 2**30
    assert 0 < c.limits.context_bytes < 2**30


@PROPS
@given(segments(), batches, shares, shares)
def test_non_increasing_in_share(seg, batch, g1, g2) -> None:
    gpu, model, s, e = seg
    lo, hi = sorted((g1, g2))
    c = cost(gpu)
    assert c.latency_ms(model, s, e, batch, hi) <= c.latency_ms(model, s, e, batch, lo) * (
        1 + 1e-12
    )


@PROPS
@given(segments(), batches, batches, shares)
def test_batch_monotone_and_per_item_economy(seg, b1, b2, g) -> None:
    gpu, model, s, e = seg
    lo, hi = sorted((b1, b2))
    c = cost(gpu)
    t_lo, t_hi = c.latency_ms(model, s, e, lo, g), c.latency_ms(model, s, e, hi, g)
    assert t_lo <= t_hi * (1 + 1e-12)
    assert t_hi / hi <= t_lo / lo * (1 + 1e-12)


@PROPS
@given(segments(), batches, shares, st.data())
def test_additive_up_to_stage_overhead(seg, batch, g, data) -> None:
    gpu, model, s, e = seg
    if e - s < 2:
        e = min(get_model(model).num_blocks, s + 2)
        if e - s < 2:
            s = e - 2
    m = data.draw(st.integers(s + 1, e - 1))
    c = cost(gpu)
    whole = c.latency_ms(model, s, e, batch, g)
    parts = c.latency_ms(model, s, m, batch, g) + c.latency_ms(model, m, e, batch, g)
    assert parts - whole == pytest.approx(c.params.batch_overhead_ms, rel=1e-6, abs=1e-9)


@settings(max_examples=25, deadline=None)
@given(segments())
def test_grid_equals_pointwise_and_is_additive(seg) -> None:
    gpu, model, s, e = seg
    c = cost(gpu)
    grid = c.latency_grid(model, s, e)
    assert grid.shape == (len(c.batches), len(c.shares))
    assert grid is c.latency_grid(model, s, e)  # cached
    assert not grid.flags.writeable
    np.testing.assert_array_equal(grid, grid_from_scalar(c, model, s, e))
    # the same numbers off the grid's fast path (float batch index, np.float32 share)
    i, j = len(c.batches) // 2, len(c.shares) // 3
    direct = c.latency_ms(model, s, e, int(c.batches[i]), np.float32(c.shares[j]))
    assert direct == pytest.approx(grid[i, j], rel=1e-5)
    # grid monotonicity, on the whole grid at once
    assert np.all(np.diff(grid, axis=1) <= 1e-12 * grid[:, 1:])
    assert np.all(np.diff(grid, axis=0) >= -1e-12 * grid[1:])


def test_saturation_knee_small_batch_gains_nothing_above_its_fill() -> None:
    c = cost("v100")
    n = get_model("resnet50").num_blocks
    b1 = c.latency_grid("resnet50", 0, n)[c.batches.index(1)]
    b64 = c.latency_grid("resnet50", 0, n)[c.batches.index(64)]
    half, full = c.shares.index(0.5), c.shares.index(1.0)
    # batch 1 barely speeds up from 50 % to 100 %; batch 64 nearly halves
    assert b1[half] / b1[full] < 1.25
    assert b64[half] / b64[full] > 1.7


def test_calibrated_anchor_points() -> None:
    """The fit reproduces iGniter's ResNet-50 V100 numbers (docs/calibration.md)."""
    c = cost("v100")
    n = get_model("resnet50").num_blocks
    for batch, share, measured in ((1, 1.0, 2.39), (1, 0.1, 7.69), (32, 1.0, 21.26)):
        assert c.latency_ms("resnet50", 0, n, batch, share) == pytest.approx(measured, rel=0.1)


def test_faster_gpus_are_faster_on_big_batches() -> None:
    n = get_model("vgg16").num_blocks
    t = {g: cost(g).latency_ms("vgg16", 0, n, 32, 1.0) for g in PRESETS}
    assert t["t4"] > t["v100"] > t["a100"] > t["h100"] >= t["h200"]
    assert set(EFFICIENCY) == set(GPUS)


def test_input_errors() -> None:
    c = cost("t4")
    n = get_model("resnet50").num_blocks
    with pytest.raises(UnknownNameError):
        c.latency_ms("nope", 0, 1, 1, 1.0)
    with pytest.raises(UnknownNameError):
        c.latency_grid("nope", 0, 1)
    for s, e in ((0, 0), (3, 2), (-1, 2), (0, n + 1)):
        with pytest.raises(GraftInputError, match="segment"):
            c.latency_ms("resnet50", s, e, 1, 0.5)
        with pytest.raises(GraftInputError, match="segment"):
            c.latency_grid("resnet50", s, e)
    for bad in (0, -3, 1.5, True):
        with pytest.raises(GraftInputError, match="batch"):
            c.latency_ms("resnet50", 0, n, bad, 0.5)
    for bad in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(GraftInputError, match="share"):
            c.latency_ms("resnet50", 0, n, 4, bad)


def test_off_grid_points_are_allowed() -> None:
    c = cost("a100")
    n = get_model("mobilenet_v2").num_blocks
    assert c.latency_ms("mobilenet_v2", 0, n, 100, 0.333) > 0


def test_registry() -> None:
    names = cost_model_names()
    for g in PRESETS:
        assert f"analytic:{g}" in names
    assert "profile:tiny-cpu" in names and "profile:<path>" in names
    assert make_cost_model("analytic:h200") is make_cost_model("analytic:h200")
    for bad in ("analytic:p100", "analytic", "gpu:v100", ""):
        with pytest.raises(UnknownNameError) as info:
            make_cost_model(bad)
        assert "analytic:v100" in str(info.value)
    with pytest.raises(GraftInputError, match="needs a path"):
        make_cost_model("profile:")


def test_grid_lookup_is_fast() -> None:
    """The planner calls latency_grid thousands of times: after the first, a dict hit."""
    import time

    c = AnalyticCostModel("v100")
    n = get_model("inception_v3").num_blocks
    t0 = time.perf_counter()
    for s in range(n):
        for e in range(s + 1, n + 1):
            c.latency_grid("inception_v3", s, e)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(20):
        for s in range(n):
            for e in range(s + 1, n + 1):
                c.latency_grid("inception_v3", s, e)
    assert first < 1.0
    assert time.perf_counter() - t0 < 0.5
