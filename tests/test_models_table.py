"""The committed block table, read without torch."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from graft.errors import UnknownNameError
from graft.models.catalog import all_models, get_model, model_names

TABLE_ORDER = ("tiny", "vgg16", "resnet50", "mobilenet_v2", "inception_v3", "vit_b_16")

BLOCK_COUNTS = {
    "tiny": 6,
    "vgg16": 15,  # 13 conv blocks (pools folded in) + fc6 + fc7_fc8
    "resnet50": 18,  # stem + 16 bottlenecks + head
    "mobilenet_v2": 20,  # stem + 17 inverted residuals + conv_last + head
    "inception_v3": 14,  # stem1 + stem2 + 11 Mixed + head
    "vit_b_16": 14,  # embed + 12 encoder layers + head
}

INPUT_SHAPES = {
    "tiny": (3, 32, 32),
    "vgg16": (3, 224, 224),
    "resnet50": (3, 224, 224),
    "mobilenet_v2": (3, 224, 224),
    "inception_v3": (3, 299, 299),
    "vit_b_16": (3, 224, 224),
}

# Published totals: torchvision's model cards give GMACs ("GFLOPS"), doubled here, and params.
# inception_v3's 23.8M excludes the aux classifier (torchvision's 27.2M includes it).
PUBLISHED_GFLOP = {
    "vgg16": 2 * 15.47,
    "resnet50": 2 * 4.09,
    "mobilenet_v2": 2 * 0.30,
    "inception_v3": 2 * 5.71,
    "vit_b_16": 2 * 17.56,
}
PUBLISHED_MPARAMS = {
    "vgg16": 138.36,
    "resnet50": 25.56,
    "mobilenet_v2": 3.50,
    "inception_v3": 23.83,
    "vit_b_16": 86.57,
}


def _total(name: str, attr: str) -> float:
    return sum(getattr(b, attr) for b in get_model(name).blocks)


def test_table_lists_the_models_in_order() -> None:
    assert tuple(model_names()) == TABLE_ORDER
    assert [m.name for m in all_models()] == list(TABLE_ORDER)


@pytest.mark.parametrize("name", TABLE_ORDER)
def test_block_counts_and_input_shapes(name: str) -> None:
    spec = get_model(name)
    assert spec.num_blocks == BLOCK_COUNTS[name]
    assert spec.input_shape == INPUT_SHAPES[name]
    assert len({b.name for b in spec.blocks}) == spec.num_blocks


@pytest.mark.parametrize("name", TABLE_ORDER)
def test_blocks_are_consistent(name: str) -> None:
    spec = get_model(name)
    for b in spec.blocks:
        assert b.out_bytes == 4 * math.prod(b.out_shape), b.name
        assert b.flops > 0 and float(b.flops).is_integer(), b.name
        assert b.kernels >= 1, b.name
        # every kernel reads or writes at least the block's output once
        assert b.traffic_bytes >= b.out_bytes, b.name
        assert b.param_bytes >= 0 and b.param_bytes % 4 == 0, b.name
    assert spec.in_bytes(0) == 4 * math.prod(INPUT_SHAPES[name])
    assert spec.in_bytes(1) == spec.blocks[0].out_bytes


def test_classifier_outputs() -> None:
    assert get_model("tiny").blocks[-1].out_shape == (10,)
    for name in PUBLISHED_GFLOP:
        assert get_model(name).blocks[-1].out_shape == (1000,)
    assert get_model("vit_b_16").blocks[0].out_shape == (197, 768)
    assert get_model("resnet50").blocks[0].out_shape == (64, 56, 56)


@pytest.mark.parametrize("name", sorted(PUBLISHED_GFLOP))
def test_totals_match_published_numbers(name: str) -> None:
    gflop = _total(name, "flops") / 1e9
    mparams = _total(name, "param_bytes") / 4e6
    assert gflop == pytest.approx(PUBLISHED_GFLOP[name], rel=0.05)
    assert mparams == pytest.approx(PUBLISHED_MPARAMS[name], rel=0.05)


def test_tiny_is_cheap() -> None:
    assert _total("tiny", "flops") < 5e6


def test_unknown_model() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_model("nope")
    assert info.value.choices == TABLE_ORDER


def test_catalog_does_not_import_torch() -> None:
    code = (
        "import sys; from graft.models.catalog import all_models; all_models(); "
        "sys.exit('torch' in sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
