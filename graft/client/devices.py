"""Client device cost models: how long (and how much energy) a device takes to run a head.

A client runs blocks ``[0, p)`` of a model at batch 1 before it uploads the activation. Each
preset here is analytic and rough: a per-block roofline plus a fixed cost per kernel,

    t_block = max(flops / (efficiency * peak_flops), (param_bytes + traffic_bytes) / mem_bandwidth)
              + kernels * kernel_overhead_s

and the head's energy is ``active_w * head_ms`` (W x ms = mJ). The figures (peak FP32 rate,
DRAM bandwidth, power) come from public datasheets and reviews, listed with their sources in
``docs/clients.md``; efficiencies and per-kernel overheads are round guesses, not fits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from graft.errors import GraftInputError, UnknownNameError
from graft.models.catalog import get_model
from graft.models.spec import ModelSpec


@dataclass(frozen=True)
class DeviceModel:
    """One client device: compute roofline, per-kernel overhead and a simple power model."""

    name: str
    #: Peak FP32 FLOP/s of the compute unit the head runs on.
    peak_flops: float
    #: Fraction of ``peak_flops`` a DNN framework reaches on this device (0, 1].
    efficiency: float
    #: DRAM bandwidth the head's weights and activations stream through, bytes/s.
    mem_bandwidth: float
    #: Fixed cost of launching one op (framework dispatch, kernel launch), seconds.
    kernel_overhead_s: float
    #: Power the device draws while it computes the head, W.
    active_w: float
    #: Power the radio draws while it transmits the activation, W.
    tx_w: float
    #: Power the device draws while it waits (radio idle / connected), W.
    idle_w: float
    label: str = ""

    def __post_init__(self) -> None:
        positive = {
            "peak_flops": self.peak_flops,
            "mem_bandwidth": self.mem_bandwidth,
        }
        for what, v in positive.items():
            if not (math.isfinite(v) and v > 0):
                raise GraftInputError(f"device {self.name!r}: {what} must be > 0, got {v!r}")
        if not 0.0 < self.efficiency <= 1.0:
            raise GraftInputError(
                f"device {self.name!r}: efficiency must be in (0, 1], got {self.efficiency!r}"
            )
        for what, v in {
            "kernel_overhead_s": self.kernel_overhead_s,
            "active_w": self.active_w,
            "tx_w": self.tx_w,
            "idle_w": self.idle_w,
        }.items():
            if not (math.isfinite(v) and v >= 0):
                raise GraftInputError(f"device {self.name!r}: {what} must be >= 0, got {v!r}")

    def block_ms(self, model: str | ModelSpec, block: int) -> float:
        """Time to run one block at batch 1, ms."""
        spec = _spec(model)
        return _block_ms(self, spec.blocks[block])

    def head_ms(self, model: str | ModelSpec, p: int) -> float:
        """Time to run blocks ``[0, p)`` at batch 1, ms; 0 for ``p = 0``."""
        spec = _spec(model)
        _check_partition(spec, p)
        return _prefix_ms(self, spec)[p]

    def head_ms_all(self, model: str | ModelSpec) -> tuple[float, ...]:
        """``head_ms`` at every point ``p = 0..L``, computed once per (device, model)."""
        return _prefix_ms(self, _spec(model))

    def head_energy_mj(self, model: str | ModelSpec, p: int) -> float:
        """Energy to run blocks ``[0, p)`` at batch 1, mJ: ``active_w * head_ms``."""
        return self.active_w * self.head_ms(model, p)

    def tx_energy_mj(self, upload_ms: float) -> float:
        """Radio energy to transmit for ``upload_ms``, mJ."""
        return self.tx_w * upload_ms


def _spec(model: str | ModelSpec) -> ModelSpec:
    return model if isinstance(model, ModelSpec) else get_model(model)


def _check_partition(spec: ModelSpec, p: int) -> None:
    if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= spec.num_blocks:
        raise GraftInputError(
            f"model {spec.name!r} has {spec.num_blocks} blocks: a head [0, p) needs an integer "
            f"0 <= p <= {spec.num_blocks}, got {p!r}"
        )


def _block_ms(device: DeviceModel, block) -> float:
    compute_s = block.flops / (device.efficiency * device.peak_flops)
    memory_s = (block.param_bytes + block.traffic_bytes) / device.mem_bandwidth
    return 1e3 * (max(compute_s, memory_s) + block.kernels * device.kernel_overhead_s)


_PREFIX_CACHE: dict[tuple[DeviceModel, str], tuple[ModelSpec, tuple[float, ...]]] = {}


def _prefix_ms(device: DeviceModel, spec: ModelSpec) -> tuple[float, ...]:
    """``out[p]`` = head time of blocks [0, p); computed once per (device, model).

    Cached by the model's name, checked against the spec object itself: hashing a whole
    ModelSpec on every call was the simulator's hot spot.
    """
    hit = _PREFIX_CACHE.get((device, spec.name))
    if hit is not None and hit[0] is spec:
        return hit[1]
    out = [0.0]
    for block in spec.blocks:
        out.append(out[-1] + _block_ms(device, block))
    _PREFIX_CACHE[(device, spec.name)] = (spec, tuple(out))
    return _PREFIX_CACHE[(device, spec.name)][1]


DEVICES: dict[str, DeviceModel] = {
    # Snapdragon 8 Gen 2-class CPU: 1x Cortex-X3 @ 3.2 GHz, 4x A715/A710 @ 2.8 GHz,
    # 3x A510 @ 2.0 GHz; ~300 GFLOP/s FP32 NEON peak; LPDDR5X-8400, 64-bit: 67 GB/s.
    "phone-cpu": DeviceModel(
        name="phone-cpu",
        label="Snapdragon 8-class phone CPU (FP32, NEON)",
        peak_flops=300e9,
        efficiency=0.2,
        mem_bandwidth=25e9,
        kernel_overhead_s=20e-6,
        active_w=5.0,
        tx_w=2.0,
        idle_w=1.0,
    ),
    # Snapdragon 8 Gen 2-class GPU/NPU path (Adreno 740 / Hexagon through a mobile runtime):
    # ~2 TFLOP/s FP32-equivalent, same LPDDR5X.
    "phone-npu": DeviceModel(
        name="phone-npu",
        label="Snapdragon 8-class phone GPU/NPU",
        peak_flops=2.0e12,
        efficiency=0.25,
        mem_bandwidth=40e9,
        kernel_overhead_s=50e-6,
        active_w=4.0,
        tx_w=2.0,
        idle_w=1.0,
    ),
    # Jetson Orin Nano 8 GB: 1024 Ampere CUDA cores @ 625 MHz = 1.28 TFLOP/s FP32,
    # 128-bit LPDDR5 68 GB/s, 7-15 W module power; Wi-Fi radio.
    "jetson": DeviceModel(
        name="jetson",
        label="Jetson Orin Nano 8 GB-class module (GPU, FP32)",
        peak_flops=1.28e12,
        efficiency=0.4,
        mem_bandwidth=50e9,
        kernel_overhead_s=20e-6,
        active_w=10.0,
        tx_w=1.0,
        idle_w=0.3,
    ),
    # Raspberry Pi 4: 4x Cortex-A72 @ 1.5 GHz, 16 FP32 FLOP/cycle/core = 96 GFLOP/s peak;
    # LPDDR4-3200 32-bit (12.8 GB/s peak, ~4-5 GB/s measured); ~6.4 W board under load.
    "rpi": DeviceModel(
        name="rpi",
        label="Raspberry Pi 4-class board (4x Cortex-A72, FP32)",
        peak_flops=96e9,
        efficiency=0.1,
        mem_bandwidth=4e9,
        kernel_overhead_s=50e-6,
        active_w=6.4,
        tx_w=0.8,
        idle_w=0.2,
    ),
}


def device_names() -> list[str]:
    return list(DEVICES)


def get_device(name: str) -> DeviceModel:
    """The preset named ``name``; ``UnknownNameError`` names the choices otherwise."""
    try:
        return DEVICES[name]
    except KeyError:
        raise UnknownNameError("device", name, device_names()) from None
