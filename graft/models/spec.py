"""Block specs: what the planner and cost models know of a model, without torch.

A model is a chain of blocks (partition units). Block ``i`` maps the output of block
``i - 1`` (or the model input, for ``i = 0``) to its own output. All sizes are per sample
(batch 1) and fp32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BlockSpec:
    """One partition unit of a model.

    ``flops`` counts a multiply-add as two FLOPs (torch's FLOP counter convention).
    ``kernels`` is the number of compute ops the block launches (convolutions, matmuls,
    norms, activations, pools, adds): what the cost model charges launch overhead for.
    ``traffic_bytes`` is the activation traffic of those ops per sample (every op reads its
    inputs and writes its output once), the memory term of the roofline.
    """

    name: str
    out_shape: tuple[int, ...]
    out_bytes: int
    flops: float
    param_bytes: int
    kernels: int = 1
    traffic_bytes: int = 0

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "out_shape": list(self.out_shape),
            "out_bytes": self.out_bytes,
            "flops": self.flops,
            "param_bytes": self.param_bytes,
            "kernels": self.kernels,
            "traffic_bytes": self.traffic_bytes,
        }

    @classmethod
    def from_json(cls, d: dict) -> BlockSpec:
        return cls(
            name=str(d["name"]),
            out_shape=tuple(int(x) for x in d["out_shape"]),
            out_bytes=int(d["out_bytes"]),
            flops=float(d["flops"]),
            param_bytes=int(d["param_bytes"]),
            kernels=int(d.get("kernels", 1)),
            traffic_bytes=int(d.get("traffic_bytes", 0)),
        )


@dataclass(frozen=True)
class ModelSpec:
    """A DNN as a chain of ``L`` blocks. The server runs ``blocks[p:]`` for partition ``p``."""

    name: str
    input_shape: tuple[int, ...]
    blocks: tuple[BlockSpec, ...] = field(default_factory=tuple)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def input_bytes(self) -> int:
        return 4 * math.prod(self.input_shape)

    def in_shape(self, block: int) -> tuple[int, ...]:
        """Per-sample shape of the activation entering ``block`` (the input at 0)."""
        return tuple(self.input_shape) if block == 0 else tuple(self.blocks[block - 1].out_shape)

    def in_bytes(self, block: int) -> int:
        """Bytes entering ``block`` per sample: the activation a client uploads at p = block."""
        return self.input_bytes if block == 0 else self.blocks[block - 1].out_bytes

    def segment_param_bytes(self, start: int, end: int) -> int:
        return sum(b.param_bytes for b in self.blocks[start:end])

    def segment_flops(self, start: int, end: int) -> float:
        return sum(b.flops for b in self.blocks[start:end])

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "input_shape": list(self.input_shape),
            "blocks": [b.to_json() for b in self.blocks],
        }

    @classmethod
    def from_json(cls, d: dict) -> ModelSpec:
        return cls(
            name=str(d["name"]),
            input_shape=tuple(int(x) for x in d["input_shape"]),
            blocks=tuple(BlockSpec.from_json(b) for b in d["blocks"]),
        )
