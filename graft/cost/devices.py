"""GPU presets for the analytic cost model: public datasheet figures, nothing fitted.

Every figure is NVIDIA's own (sources in ``docs/cost_model.md``). ``peak_flops`` is the
arithmetic rate the analytic model divides FLOPs by:

* Volta and Turing (V100, T4) have no TF32: FP32 runs on the CUDA cores, so ``peak_flops`` is
  the FP32 peak.
* Ampere and Hopper (A100, H100, H200) run FP32 convolutions and matmuls on the tensor cores in
  TF32 when PyTorch allows it: ``torch.backends.cudnn.allow_tf32`` is on by default (every
  convolution), and matmuls need ``torch.set_float32_matmul_precision("high")``. The presets
  assume TF32 (``tensor_cores=True``) and use the *dense* TF32 tensor-core peak (the datasheets
  print the 2:4-sparse figure, twice the dense one, for H100/H200). The CUDA-core FP32 peak is
  kept in ``peak_fp32_flops`` for reference.
"""

from __future__ import annotations

from dataclasses import dataclass

MIB = 1 << 20
GIB = 1 << 30

#: Device memory a stage process holds besides weights and activations: the CUDA context with
#: the kernels it loads (lazy module loading, the default since CUDA 12.2, loads only the
#: kernels used), the cuDNN/cuBLAS workspaces and the CUDA-graph memory pool. Eagerly loaded
#: PyTorch contexts measure 700-800 MB; lazily loaded ones a few hundred MB. 512 MiB is a
#: round, conservative figure; a profile may carry a measured value instead.
GPU_CONTEXT_BYTES = 512 * MIB

#: Fraction of the DRAM bandwidth a device-to-device copy between two processes on one GPU
#: gets: a copy reads and writes every byte once.
DEVICE_COPY_FRACTION = 0.5


@dataclass(frozen=True)
class GpuSpec:
    """One GPU model as its datasheet describes it."""

    key: str
    label: str
    #: FLOP/s the analytic model uses (FP32 CUDA cores, or dense TF32 tensor cores).
    peak_flops: float
    #: FP32 FLOP/s on the CUDA cores (no tensor cores), for reference.
    peak_fp32_flops: float
    #: Whether ``peak_flops`` is a tensor-core (TF32) figure.
    tensor_cores: bool
    #: DRAM bandwidth, bytes/s.
    mem_bandwidth: float
    sms: int
    #: The datasheet's "GB" read as GiB, as nvidia-smi reports it (within a few percent).
    memory_bytes: int
    source: str
    #: Bandwidth between two GPUs of one node, one direction, bytes/s (hand-offs between
    #: stages on different GPUs), and where the figure comes from.
    interconnect_bytes_per_s: float = 16e9
    interconnect: str = "PCIe Gen3 x16: 32 GB/s both directions, 16 GB/s one way"


GPUS: dict[str, GpuSpec] = {
    "t4": GpuSpec(
        key="t4",
        label="NVIDIA T4 (16 GB GDDR6, 70 W)",
        peak_flops=8.1e12,
        peak_fp32_flops=8.1e12,
        tensor_cores=False,
        mem_bandwidth=320e9,
        sms=40,
        memory_bytes=16 * GIB,
        source="NVIDIA T4 Tensor Core GPU datasheet; 2560 CUDA cores = 40 Turing SMs",
        interconnect_bytes_per_s=16e9,
        interconnect="PCIe Gen3 x16 (T4 datasheet: 32 GB/s both directions): 16 GB/s one way",
    ),
    "v100": GpuSpec(
        key="v100",
        label="NVIDIA V100 SXM2 16 GB",
        peak_flops=15.7e12,
        peak_fp32_flops=15.7e12,
        tensor_cores=False,
        mem_bandwidth=900e9,
        sms=80,
        memory_bytes=16 * GIB,
        source="NVIDIA Tesla V100 datasheet (SXM2); Volta whitepaper: 80 SMs",
        interconnect_bytes_per_s=25e9,
        interconnect="one NVLink 2.0 link (V100 datasheet: 300 GB/s over six links, both "
        "directions): 25 GB/s one way, the least a DGX-1 GPU pair with a direct link has",
    ),
    "a100": GpuSpec(
        key="a100",
        label="NVIDIA A100 SXM4 80 GB (TF32)",
        peak_flops=156e12,
        peak_fp32_flops=19.5e12,
        tensor_cores=True,
        mem_bandwidth=2039e9,
        sms=108,
        memory_bytes=80 * GIB,
        source="NVIDIA A100 Tensor Core GPU datasheet (SXM 80GB); Ampere whitepaper: 108 SMs",
        interconnect_bytes_per_s=300e9,
        interconnect="NVLink 3 through NVSwitch (A100 datasheet: 600 GB/s both directions): "
        "300 GB/s one way",
    ),
    "h100": GpuSpec(
        key="h100",
        label="NVIDIA H100 SXM5 80 GB (TF32)",
        peak_flops=494.7e12,
        peak_fp32_flops=67e12,
        tensor_cores=True,
        mem_bandwidth=3.35e12,
        sms=132,
        memory_bytes=80 * GIB,
        source="NVIDIA H100 Tensor Core GPU datasheet (SXM; TF32 989 TFLOPS with sparsity)",
        interconnect_bytes_per_s=450e9,
        interconnect="NVLink 4 through NVSwitch (H100 datasheet: 900 GB/s both directions): "
        "450 GB/s one way",
    ),
    "h200": GpuSpec(
        key="h200",
        label="NVIDIA H200 SXM 141 GB (TF32)",
        peak_flops=494.7e12,
        peak_fp32_flops=67e12,
        tensor_cores=True,
        mem_bandwidth=4.8e12,
        sms=132,
        memory_bytes=140 * GIB,  # datasheet "141 GB", rounded down to whole GiB
        source="NVIDIA H200 Tensor Core GPU datasheet (SXM; TF32 989 TFLOPS with sparsity)",
        interconnect_bytes_per_s=450e9,
        interconnect="NVLink 4 through NVSwitch (H200 datasheet: 900 GB/s both directions): "
        "450 GB/s one way",
    ),
}
