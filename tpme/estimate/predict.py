"""From a device-independent step estimate to one GPU: runtime overhead, fit, step and epoch time.

Time: a roofline per op, summed over the step's ops,
    t_op = max(flops / (peak_flops[dtype] * compute_efficiency), bytes / (bandwidth * memory_efficiency)),
    step = sum(t_op) + kernels * kernel_overhead_s,
    or, when the forward and backward are replayed from CUDA graphs,
    step = sum(t_op) + graphed * graph_kernel_overhead_s + eager * kernel_overhead_s,
    eager = the optimizer's kernels + one host-to-device copy per batch tensor,
    epoch = step * steps per epoch (ceil(samples / batch_size): users for the recommender),
    plus, where the protocol's epoch does more (official: validation, test, checkpoint),
    each such part (`extras_times_s`).
`dtype` is the precision the op computes in: fp16/bf16 ops at the tensor-core rate,
fp32 matmuls at the fp32 rate (PyTorch leaves TF32 off for matmuls), fp32 convolutions
at the TF32 rate (cuDNN's default). Data loading is not included.
Memory: the tensor peak plus a runtime overhead that the allocator never reports
(CUDA context, cuBLAS workspace) and allocator fragmentation; fits when their sum is
at most the GPU's memory.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from tpme.estimate.cost import StepCost
from tpme.estimate.extras import ExtrasEstimate
from tpme.estimate.gpus import CHECKPOINT_WRITE_BYTES_S, Gpu


@dataclass(frozen=True)
class Overhead:
    cuda_context_bytes: int
    cublas_workspace_bytes: int
    fragmentation_bytes: int

    @property
    def total(self) -> int:
        return self.cuda_context_bytes + self.cublas_workspace_bytes + self.fragmentation_bytes


def runtime_overhead(peak_bytes: int, gpu: Gpu) -> Overhead:
    c = gpu.calibration
    return Overhead(c.cuda_context_bytes, c.cublas_workspace_bytes, int(peak_bytes * c.fragmentation))


def fits(peak_bytes: int, gpu: Gpu) -> bool:
    return peak_bytes + runtime_overhead(peak_bytes, gpu).total <= gpu.memory_bytes


def _ops_time_s(cost: StepCost, gpu: Gpu) -> float:
    """The roofline time of every op, without launch overheads."""
    c = gpu.calibration
    bandwidth = gpu.bandwidth_bytes_s * c.memory_efficiency
    total = 0.0
    for op in cost.ops:
        compute = op.flops / (gpu.peak_flops[op.compute_dtype] * c.compute_efficiency) if op.flops else 0.0
        total += max(compute, op.bytes / bandwidth)
    return total


def step_time_s(cost: StepCost, gpu: Gpu, graph_eager_kernels: int | None = None) -> float:
    """`graph_eager_kernels`: None for an eager step; for a graphed one, the kernels that
    still launch eagerly besides the optimizer's (the batch's copies in)."""
    c = gpu.calibration
    total = _ops_time_s(cost, gpu)
    if graph_eager_kernels is None:
        return total + cost.kernels * c.kernel_overhead_s
    optimizer = sum(1 for op in cost.ops if op.phase == "optimizer")
    graphed = cost.kernels - optimizer
    return total + graphed * c.graph_kernel_overhead_s + (optimizer + graph_eager_kernels) * c.kernel_overhead_s


def extras_times_s(extras: ExtrasEstimate, gpu: Gpu) -> dict[str, float]:
    """Seconds of each part of the epoch besides training: a forward piece's batch repeated
    (its ops in proportion to the work, its kernels launched once per batch, eagerly), the
    checkpoint at the assumed disk write bandwidth (gpus.CHECKPOINT_WRITE_BYTES_S)."""
    out = dict.fromkeys(extras.parts, 0.0)
    for piece in extras.pieces:
        launches = math.ceil(piece.repeats)
        out[piece.part] += _ops_time_s(piece.cost, gpu) * piece.repeats + piece.cost.kernels * launches * gpu.calibration.kernel_overhead_s
    if extras.checkpoint_bytes is not None:
        out["checkpoint"] = extras.checkpoint_bytes / CHECKPOINT_WRITE_BYTES_S
    return out
