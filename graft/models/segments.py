"""How a worker runs a block range: eagerly on CPU; on CUDA, replayed from CUDA graphs
captured once per batch size, inside the worker's part of the GPU.

A stage of batch ``B`` captures graphs at the powers of two below ``B`` and at ``B``; a
short batch is padded to the next captured size (rows are independent in inference: the
padding rows' outputs are dropped). Capturing removes the per-kernel launch cost the
analytic model's ``batch_overhead_ms`` prices; ``graft profile --device cuda`` measures
with the same runner, so that profiled and served latencies come from one code path.

A worker's share of a GPU is its MPS active-thread percentage when an MPS control daemon
runs (set before CUDA starts, ``worker.run_worker``); without one, a green context of
``share x SMs`` SMs where the driver and torch offer them (``green_stream``); otherwise
nothing bounds it (logged once).
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


def captured_sizes(batch: int) -> list[int]:
    """The batch sizes a stage of ``batch`` captures: powers of two below it, and it."""
    return sorted({1 << k for k in range(max(0, math.ceil(math.log2(max(1, batch)))))
                   if 1 << k < batch} | {batch})


def padded_size(sizes: list[int], n: int) -> int:
    """The captured size a batch of ``n`` runs at (the smallest at least ``n``)."""
    i = bisect.bisect_left(sizes, n)
    if i == len(sizes):
        raise ValueError(f"a batch of {n} is larger than the largest captured ({sizes[-1]})")
    return sizes[i]


class SegmentRunner:
    """Blocks ``[start, end)`` of a chain at up to ``batch`` samples of ``in_shape``
    (``sizes``: the batch sizes to capture, default ``captured_sizes(batch)``)."""

    def __init__(self, chain: Any, start: int, end: int, batch: int,
                 in_shape: tuple[int, ...], device: Any, *, graphs: bool = True,
                 sizes: list[int] | None = None):
        self.chain, self.start, self.end = chain, start, end
        self.sizes = sorted(sizes) if sizes else captured_sizes(batch)
        self._graphs: dict[int, tuple[Any, Any, Any]] = {}
        if graphs and getattr(device, "type", str(device)) == "cuda":
            try:
                self._capture(in_shape, device)
            except Exception as e:  # a model torch cannot capture runs eagerly
                log.warning("blocks %d-%d: CUDA graph capture failed (%s); running eagerly",
                            start, end, e)
                self._graphs.clear()

    @property
    def graphed(self) -> bool:
        return bool(self._graphs)

    def _capture(self, in_shape: tuple[int, ...], device: Any) -> None:
        import torch

        pool = torch.cuda.graph_pool_handle()
        side = torch.cuda.Stream(device)
        for size in sorted(self.sizes, reverse=True):  # the largest first: the pool fits all
            x = torch.zeros((size, *in_shape), device=device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):  # warm-up outside the capture (cuDNN picks, etc.)
                for _ in range(2):
                    self.chain.run(x, self.start, self.end)
            torch.cuda.current_stream(device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=pool):
                y = self.chain.run(x, self.start, self.end)
            self._graphs[size] = (graph, x, y)

    def __call__(self, x: Any) -> Any:
        if not self._graphs:
            return self.chain.run(x, self.start, self.end)
        n = x.shape[0]
        graph, static_in, static_out = self._graphs[padded_size(self.sizes, n)]
        static_in[:n].copy_(x)
        graph.replay()
        return static_out[:n].clone()

    def kernel(self, x: Any) -> tuple[Callable[[], Any], Any]:
        """What runs on a full batch ``x`` without the copies around it (what the profiler
        times): the captured graph's replay with ``x`` in its input, or the eager call; and
        the output it writes."""
        if not self._graphs:
            return (lambda: self.chain.run(x, self.start, self.end)), self(x)
        graph, static_in, static_out = self._graphs[padded_size(self.sizes, x.shape[0])]
        static_in.copy_(x)
        graph.replay()
        return graph.replay, static_out


def green_stream(share: float, device: Any) -> tuple[Any, Any] | None:
    """A green context holding ``share`` of the GPU's SMs and a stream of it (keep both), or
    None where the driver or torch does not offer green contexts (the reason is logged)."""
    import torch

    try:
        from torch.cuda.green_contexts import GreenContext

        sms = torch.cuda.get_device_properties(device).multi_processor_count
        # SM partitions come in even counts of at least 2 on Volta and later
        want = max(2, 2 * round(share * sms / 2))
        ctx = GreenContext(num_sms=min(sms, want), device_id=device.index or 0)
        return ctx, ctx.Stream()
    except Exception as e:
        log.warning("no green context for a %.0f%% share (%s): the worker's SMs are not "
                    "bounded", 100 * share, e)
        return None
