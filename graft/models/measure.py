"""Measure the block table: run every block of every model once and record its costs.

Each block is executed at batch 1, fp32, eval mode, under ``torch.no_grad`` on the CPU, on
the output of the previous block (a seeded random input for block 0). Recorded per block:

* ``out_shape`` / ``out_bytes``: the output's shape without the batch dimension and
  ``4 * numel``.
* ``flops``: counted by ``torch.utils.flop_counter.FlopCounterMode`` (a multiply-add is two
  FLOPs). Its registry has no formula for the CPU attention kernel
  ``aten._scaled_dot_product_flash_attention_for_cpu``, so that op is mapped to torch's own
  ``sdpa_flop_count`` formula (the one it applies to the CUDA attention kernels). Multi-head
  attention's fused inference fast path (``aten._native_multi_head_attention``, which the
  counter cannot see into) is switched off while measuring, so attention runs as its
  separate projections and ``scaled_dot_product_attention``.
* ``param_bytes``: ``4 *`` the parameters of the block's modules (buffers such as batch-norm
  running statistics are not counted). ViT's class token and position embedding are block 0's.
* ``kernels``: the number of compute ops the block runs, counted at the ATen level with a
  ``TorchDispatchMode``. An op is counted unless it is a view (its schema says its output
  aliases an input: ``view``, ``t``, ``permute``, ``expand``, ``select``, ...) or its name is
  in :data:`NON_KERNEL_OPS` (allocations and aliasing ops that launch no kernel).
  Composite ops are seen decomposed as the dispatcher runs them (``linear`` -> ``addmm``).
* ``traffic_bytes``: over the counted ops, the bytes of their tensor inputs that are
  activations (a tensor whose storage is not one of the block's parameters or buffers) plus
  the bytes of all their tensor outputs: each op reads its activation inputs and writes its
  outputs once. Weights are not included (``param_bytes`` is that term). An in-place op
  counts its tensor once as input and once as output.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from graft.models.chains import MODEL_NAMES, BlockChain, build_chain, input_shape
from graft.models.spec import BlockSpec, ModelSpec

log = logging.getLogger(__name__)

TABLE_PATH = Path(__file__).parent / "data" / "blocks.json"
MEASURE_SEED = 0
REL_TOL = 1e-9

#: ATen op names (overload packets) that launch no compute kernel.
NON_KERNEL_OPS: frozenset[str] = frozenset(
    {
        "empty",
        "empty_like",
        "empty_strided",
        "detach",
        "alias",
        "lift_fresh",
        "_unsafe_view",
        "_reshape_alias",
    }
)


def _cpu_sdpa_flop(
    query_shape: torch.Size, key_shape: torch.Size, value_shape: torch.Size, *_: Any, **__: Any
) -> int:
    """FLOPs of the CPU attention kernel: torch's formula for the CUDA attention kernels."""
    return sdpa_flop_count(query_shape, key_shape, value_shape)


_EXTRA_FLOP_FORMULAS: dict[Any, Any] = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_sdpa_flop,
}


# ----------------------------------------------------------------------------- op counting


def _tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _storage_key(t: torch.Tensor) -> int:
    return t.untyped_storage().data_ptr()


def is_kernel_op(func: torch._ops.OpOverload) -> bool:
    """Whether ``func`` counts as a compute kernel (see the module docstring)."""
    return not func.is_view and func.overloadpacket.__name__ not in NON_KERNEL_OPS


class OpCounter(TorchDispatchMode):
    """Counts kernel ops and their activation traffic while active."""

    def __init__(self, weight_storages: set[int]) -> None:
        super().__init__()
        self.weight_storages = weight_storages
        self.kernels = 0
        self.traffic_bytes = 0

    def _activation_bytes(self, tree: Any) -> int:
        leaves, _ = tree_flatten(tree)
        return sum(
            _tensor_bytes(t)
            for t in leaves
            if isinstance(t, torch.Tensor) and _storage_key(t) not in self.weight_storages
        )

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if is_kernel_op(func):
            self.kernels += 1
            self.traffic_bytes += self._activation_bytes((args, kwargs))
            self.traffic_bytes += self._activation_bytes(out)
        return out


# ----------------------------------------------------------------------------- measuring


@contextmanager
def _mha_fastpath_disabled() -> Iterator[None]:
    before = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(before)


def _weight_storages(block: nn.Module) -> set[int]:
    tensors = list(block.parameters()) + list(block.buffers())
    return {_storage_key(t) for t in tensors}


def _param_bytes(block: nn.Module) -> int:
    return 4 * sum(p.numel() for p in block.parameters())


def _count_flops(block: nn.Module, x: torch.Tensor) -> tuple[int, torch.Tensor]:
    with FlopCounterMode(display=False, custom_mapping=_EXTRA_FLOP_FORMULAS) as counter:
        y = block(x)
    return int(counter.get_total_flops()), y


def _count_ops(block: nn.Module, x: torch.Tensor) -> OpCounter:
    counter = OpCounter(_weight_storages(block))
    with counter:
        block(x)
    return counter


def measure_block(name: str, block: nn.Module, x: torch.Tensor) -> tuple[BlockSpec, torch.Tensor]:
    """Measure one block on input ``x`` (batch 1); returns its spec and its output."""
    flops, y = _count_flops(block, x)
    ops = _count_ops(block, x)
    out_shape = tuple(int(d) for d in y.shape[1:])
    spec = BlockSpec(
        name=name,
        out_shape=out_shape,
        out_bytes=4 * math.prod(out_shape),
        flops=float(flops),
        param_bytes=_param_bytes(block),
        kernels=ops.kernels,
        traffic_bytes=ops.traffic_bytes,
    )
    return spec, y


def measure_chain(chain: BlockChain) -> ModelSpec:
    """Measure every block of ``chain`` at batch 1, fp32, eval, no grad."""
    gen = torch.Generator().manual_seed(MEASURE_SEED)
    x = torch.randn(1, *input_shape(chain.name), generator=gen)
    blocks = []
    with torch.no_grad(), _mha_fastpath_disabled():
        for name, block in zip(chain.block_names, chain.blocks):
            spec, x = measure_block(name, block, x)
            blocks.append(spec)
    return ModelSpec(name=chain.name, input_shape=input_shape(chain.name), blocks=tuple(blocks))


def measure_model(name: str) -> ModelSpec:
    """Build model ``name`` (random weights; they do not change the numbers) and measure it."""
    spec = measure_chain(build_chain(name, seed=MEASURE_SEED))
    log.info(
        "measured %s: %d blocks, %.3f GFLOP, %.1f MB params",
        name,
        spec.num_blocks,
        spec.segment_flops(0, spec.num_blocks) / 1e9,
        spec.segment_param_bytes(0, spec.num_blocks) / 1e6,
    )
    return spec


def measure_all(progress: Callable[[str], None] | None = None) -> list[ModelSpec]:
    """Measure every model in :data:`MODEL_NAMES`, in table order; ``progress(message)``
    before each model."""
    out = []
    for i, name in enumerate(MODEL_NAMES):
        if progress is not None:
            progress(f"measuring {name} ({i + 1}/{len(MODEL_NAMES)})")
        out.append(measure_model(name))
    return out


# ----------------------------------------------------------------------------- the table


def _integral(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def table_json(specs: list[ModelSpec]) -> dict:
    """The table file's content: ``{"models": [ModelSpec.to_json(), ...]}``, FLOPs as ints."""
    models = []
    for spec in specs:
        d = spec.to_json()
        for b in d["blocks"]:
            b["flops"] = _integral(b["flops"])
        models.append(d)
    return {"models": models}


def table_text(specs: list[ModelSpec]) -> str:
    return json.dumps(table_json(specs), indent=1) + "\n"


def _close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=0.0)


_EXACT_FIELDS = ("out_shape", "out_bytes", "param_bytes", "kernels")
_CLOSE_FIELDS = ("flops", "traffic_bytes")


def _diff_block(model: str, i: int, old: BlockSpec, new: BlockSpec) -> list[str]:
    where = f"{model} block {i} ({new.name})"
    diffs = []
    if old.name != new.name:
        diffs.append(f"{model} block {i}: name {old.name!r} != measured {new.name!r}")
    for f in _EXACT_FIELDS:
        if getattr(old, f) != getattr(new, f):
            diffs.append(f"{where}: {f} {getattr(old, f)} != measured {getattr(new, f)}")
    for f in _CLOSE_FIELDS:
        if not _close(getattr(old, f), getattr(new, f)):
            diffs.append(f"{where}: {f} {getattr(old, f)} != measured {getattr(new, f)}")
    return diffs


def _diff_model(old: ModelSpec, new: ModelSpec) -> list[str]:
    diffs = []
    if old.input_shape != new.input_shape:
        diffs.append(f"{new.name}: input_shape {old.input_shape} != measured {new.input_shape}")
    if old.num_blocks != new.num_blocks:
        diffs.append(f"{new.name}: {old.num_blocks} blocks != measured {new.num_blocks}")
    for i, (a, b) in enumerate(zip(old.blocks, new.blocks)):
        diffs += _diff_block(new.name, i, a, b)
    return diffs


def diff_tables(old: list[ModelSpec], new: list[ModelSpec]) -> list[str]:
    """Human-readable differences between a stored table ``old`` and a measured ``new``."""
    old_names = [m.name for m in old]
    new_names = [m.name for m in new]
    if old_names != new_names:
        return [f"models {old_names} != measured {new_names}"]
    diffs: list[str] = []
    for a, b in zip(old, new):
        diffs += _diff_model(a, b)
    return diffs


def load_table(path: Path) -> list[ModelSpec]:
    data = json.loads(path.read_text())
    return [ModelSpec.from_json(m) for m in data["models"]]


def regenerate(path: str | Path | None = None, check: bool = False,
               progress: Callable[[str], None] | None = None) -> list[str]:
    """Measure all models; write the table to ``path`` or, with ``check``, compare with it.

    ``path`` defaults to the committed ``graft/models/data/blocks.json``. Returns the
    differences between the file's previous content and the measurement (an empty list
    when they agree; a missing file is one difference). With ``check`` nothing is written
    and a non-empty list means the committed table is stale.
    """
    target = Path(path) if path is not None else TABLE_PATH
    measured = measure_all(progress)
    if target.is_file():
        diffs = diff_tables(load_table(target), measured)
    else:
        diffs = [f"{target} does not exist"]
    if not check:
        target.write_text(table_text(measured))
        log.info("wrote %s (%d differences from the previous table)", target, len(diffs))
    return diffs
