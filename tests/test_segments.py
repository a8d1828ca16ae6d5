"""How a worker runs a block range (``graft.models.segments``): the batch sizes a stage
captures, padding, and eager execution where there are no CUDA graphs (CPU)."""

import pytest

torch = pytest.importorskip("torch")

from graft.models.catalog import get_model  # noqa: E402
from graft.models.chains import build_chain  # noqa: E402
from graft.models.segments import SegmentRunner, captured_sizes, padded_size  # noqa: E402


def test_captured_sizes_and_padding():
    assert captured_sizes(1) == [1]
    assert captured_sizes(8) == [1, 2, 4, 8]
    assert captured_sizes(6) == [1, 2, 4, 6]
    assert [padded_size(captured_sizes(6), n) for n in range(1, 7)] == [1, 2, 4, 4, 6, 6]
    with pytest.raises(ValueError, match="larger than the largest"):
        padded_size([1, 2], 3)


def test_runner_on_cpu_is_the_chain():
    chain = build_chain("tiny", seed=0)
    shape = tuple(get_model("tiny").in_shape(1))
    runner = SegmentRunner(chain, 1, 3, 4, shape, torch.device("cpu"))
    assert not runner.graphed
    x = torch.randn((3, *shape))
    with torch.inference_mode():
        assert torch.equal(runner(x), chain.run(x, 1, 3))


def test_kernel_on_cpu_is_the_eager_call_and_its_output():
    chain = build_chain("tiny", seed=0)
    shape = tuple(get_model("tiny").in_shape(0))
    runner = SegmentRunner(chain, 0, 2, 2, shape, torch.device("cpu"), sizes=[2])
    x = torch.randn((2, *shape))
    with torch.inference_mode():
        fn, y = runner.kernel(x)
        assert runner.sizes == [2]
        assert torch.equal(y, chain.run(x, 0, 2)) and torch.equal(fn(), y)
