"""Counts and units in messages: "1 flow", "2 flows", and "device" for a CPU profile.

A share is a fraction of one GPU under the analytic and CUDA-profiled cost models, and a
fraction of one device (the cores of a CPU) under a CPU profile; messages name the unit
``device_word`` gives, so a plan on ``profile:tiny-cpu`` does not claim GPUs.
"""

from __future__ import annotations

from typing import Any


def plural(n: int, word: str, many: str | None = None) -> str:
    """``"1 flow"``, ``"0 flows"``, ``"2 flows"``; ``many`` for irregular plurals."""
    return f"{n:,} {word if n == 1 else (many or word + 's')}"


def is_cpu(cost: Any) -> bool:
    """Whether ``cost`` models a CPU (a profile measured with ``--device cpu``)."""
    device = getattr(cost, "device", None)
    return isinstance(device, dict) and device.get("kind") == "cpu"


def device_word(cost: Any) -> str:
    """``"GPU"`` for a GPU cost model, ``"device"`` for a CPU profile."""
    return "device" if is_cpu(cost) else "GPU"


def devices(n: int, cost: Any) -> str:
    """``"1 GPU"``, ``"3 GPUs"``, or ``"1 device"`` on a CPU profile."""
    return plural(n, device_word(cost))
