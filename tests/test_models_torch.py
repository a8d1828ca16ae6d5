"""Block chains of the real torchvision models against their reference forward passes."""

from __future__ import annotations

import functools
import json

import pytest

torch = pytest.importorskip("torch")

from graft.errors import GraftInputError, UnknownNameError  # noqa: E402
from graft.models.chains import (  # noqa: E402
    MODEL_NAMES,
    BlockChain,
    build_chain,
    build_reference,
    chain_from_reference,
    input_shape,
)
from graft.models.measure import (  # noqa: E402
    TABLE_PATH,
    diff_tables,
    load_table,
    measure_model,
    regenerate,
    table_json,
)

pytestmark = pytest.mark.torch

# The chain calls the reference model's own modules in the reference order, so on one thread
# the outputs are bit-identical. The tolerance only absorbs what multi-threaded CPU kernels
# may do differently from call to call (reduction order in oneDNN convolutions / GEMMs): a few
# ulp of fp32 over activations of order 1, far below 1e-5 absolute / 1e-4 relative.
ATOL = 1e-5
RTOL = 1e-4

BIG_MODELS = [n for n in MODEL_NAMES if n != "tiny"]


@pytest.fixture(autouse=True, scope="module")
def _two_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@functools.cache
def _reference(name: str) -> torch.nn.Module:
    """Seed-0 reference models, built once per test session (the big ones take seconds)."""
    return build_reference(name, seed=0)


def _input(name: str, batch: int, seed: int = 123) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, *input_shape(name), generator=gen)


def _assert_close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, atol=ATOL, rtol=RTOL)


def _split_points(num_blocks: int) -> list[int]:
    return sorted({0, 1, num_blocks // 2, num_blocks - 1, num_blocks})


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_chain_matches_reference_and_splits(name: str) -> None:
    ref = _reference(name)
    chain = chain_from_reference(name, ref)
    x = _input(name, batch=2 if name == "tiny" else 1)
    with torch.no_grad():
        want = ref(x)
        _assert_close(chain(x), want)
        points = _split_points(chain.num_blocks) if name == "tiny" else [chain.num_blocks // 2]
        for p in points:
            mid = chain.run(x, 0, p)
            _assert_close(chain.run(mid, p, chain.num_blocks), want)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_chain_shares_every_reference_parameter_once(name: str) -> None:
    ref = _reference(name)
    chain = chain_from_reference(name, ref)
    ref_ids = {id(p) for p in ref.parameters()}
    per_block = [{id(p) for p in b.parameters()} for b in chain.blocks]
    assert set().union(*per_block) == ref_ids
    assert sum(len(s) for s in per_block) == len(ref_ids)  # no parameter in two blocks
    assert len(chain.block_names) == chain.num_blocks == len(chain.blocks)


def test_tiny_split_at_every_point_batch_two() -> None:
    chain = build_chain("tiny", seed=3)
    x = _input("tiny", batch=2)
    with torch.no_grad():
        want = chain(x)
        assert want.shape == (2, 10)
        for p in range(chain.num_blocks + 1):
            _assert_close(chain.run(chain.run(x, 0, p), p, chain.num_blocks), want)


def test_seed_decides_weights_and_leaves_global_rng_alone() -> None:
    torch.manual_seed(7)
    expected_next = torch.rand(1)
    torch.manual_seed(7)
    a = build_reference("tiny", seed=1)
    assert torch.equal(torch.rand(1), expected_next)
    b = build_reference("tiny", seed=1)
    c = build_reference("tiny", seed=2)
    wa, wb, wc = (m.stem[0].weight for m in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)
    assert not a.training


def test_state_dict_round_trip(tmp_path) -> None:
    source = build_reference("tiny", seed=5)
    path = tmp_path / "tiny.pt"
    torch.save(source.state_dict(), path)
    chain = build_chain("tiny", seed=0, state_dict_path=str(path))
    x = _input("tiny", batch=2)
    with torch.no_grad():
        _assert_close(chain(x), source(x))


def test_missing_state_dict_is_input_error(tmp_path) -> None:
    with pytest.raises(GraftInputError, match="not found"):
        build_reference("tiny", state_dict_path=str(tmp_path / "nope.pt"))


def test_mismatched_state_dict_is_input_error(tmp_path) -> None:
    path = tmp_path / "wrong.pt"
    torch.save({"not_a_layer.weight": torch.zeros(3)}, path)
    with pytest.raises(GraftInputError, match="does not fit"):
        build_chain("tiny", state_dict_path=str(path))


def test_unreadable_state_dict_is_input_error(tmp_path) -> None:
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"not a torch file")
    with pytest.raises(GraftInputError, match="cannot read"):
        build_reference("tiny", state_dict_path=str(path))


def test_unknown_model_names() -> None:
    for call in (
        lambda: build_reference("nope"),
        lambda: build_chain("nope"),
        lambda: input_shape("nope"),
        lambda: chain_from_reference("nope", torch.nn.Identity()),
    ):
        with pytest.raises(UnknownNameError) as info:
            call()
        assert info.value.choices == MODEL_NAMES


def test_run_rejects_bad_ranges() -> None:
    chain = build_chain("tiny")
    assert isinstance(chain, BlockChain)
    x = _input("tiny", batch=1)
    for start, end in [(-1, 2), (3, 2), (0, chain.num_blocks + 1)]:
        with pytest.raises(GraftInputError):
            chain.run(x, start, end)


def test_tiny_is_cheap_and_its_table_entry_is_current() -> None:
    spec = measure_model("tiny")
    assert spec.segment_flops(0, spec.num_blocks) < 5e6
    committed = json.loads(TABLE_PATH.read_text())["models"][0]
    assert table_json([spec])["models"][0] == committed


def test_diff_tables_names_what_changed() -> None:
    spec = measure_model("tiny")
    old = spec.blocks[2]
    tampered = type(old)(**{**old.__dict__, "kernels": old.kernels + 1, "flops": old.flops * 1.01})
    stale = type(spec)(spec.name, spec.input_shape, spec.blocks[:2] + (tampered,) + spec.blocks[3:])
    diffs = diff_tables([stale], [spec])
    assert len(diffs) == 2
    assert all("tiny block 2 (down2)" in d for d in diffs)
    assert diff_tables([spec], [spec]) == []
    assert diff_tables([spec], []) != []


def test_regenerate_check_finds_committed_table_current() -> None:
    """Measures every model (the slow test, ~15 s on 2 cores); nothing is written."""
    before = TABLE_PATH.read_text()
    assert regenerate(check=True) == [], "stale table: run `graft models --regenerate`"
    assert TABLE_PATH.read_text() == before


def test_regenerate_writes_a_table_that_loads(tmp_path, monkeypatch) -> None:
    import graft.models.measure as measure

    monkeypatch.setattr(measure, "measure_all", lambda progress=None: [measure_model("tiny")])
    path = tmp_path / "blocks.json"
    assert regenerate(path) == [f"{path} does not exist"]
    assert [m.name for m in load_table(path)] == ["tiny"]
    assert regenerate(path, check=True) == []
    assert path.read_text().startswith('{\n "models": [')
