"""FLOPs and bytes moved by every op of a training step, by phase.

FLOPs come from torch.utils.flop_counter's formula registry (matmuls, convolutions,
attention); the CPU attention kernel `_scaled_dot_product_flash_attention_for_cpu` and
its backward have no formula in torch 2.13, so the standard SDPA formulas are registered
for them. Bytes moved are the sizes of each op's tensor inputs and outputs (no fusion,
no cache reuse: an upper bound on traffic), except that a gather reads only the rows it
gathers. View ops and metadata queries move nothing and launch nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

aten = torch.ops.aten
PHASES = ("forward", "backward", "optimizer")
# aten ops that allocate or relabel without running a kernel; ops outside aten (a fake
# tensor's `prim.device` query, profiler markers) run none either
KERNEL_FREE_OPS = {aten.empty.memory_format, aten.empty_like.default, aten.empty_strided.default, aten.detach.default, aten.lift_fresh.default, aten._local_scalar_dense.default}
_GATHER_OPS = {aten.index, aten.index_select, aten.embedding}
_CONV_OPS = {aten.convolution, aten._convolution, aten.convolution_backward, aten._slow_conv2d_forward}


def runs_kernel(func: torch._ops.OpOverload) -> bool:
    """Whether a dispatched op launches a kernel on a GPU (views and metadata queries do not)."""
    return func.namespace == "aten" and not func.is_view and func not in KERNEL_FREE_OPS


def register_cpu_attention_flops() -> None:
    """Count CPU SDPA like the CUDA kernels (idempotent)."""
    pairs = {
        aten._scaled_dot_product_flash_attention_for_cpu: flop_counter.sdpa_flop,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: flop_counter.sdpa_backward_flop,
    }
    for op, formula in pairs.items():
        if op not in flop_counter.flop_registry:
            flop_counter.register_flop_formula(op, get_raw=True)(formula)  # formula already takes tensors


@dataclass(frozen=True)
class OpCost:
    phase: str
    flops: int
    bytes: int
    compute_dtype: str  # fp32|tf32|fp16|bf16: which peak rate its FLOPs run at


@dataclass
class StepCost:
    ops: list[OpCost] = field(default_factory=list)

    def flops(self, phase: str | None = None) -> int:
        return sum(o.flops for o in self.ops if phase is None or o.phase == phase)

    def bytes(self, phase: str | None = None) -> int:
        return sum(o.bytes for o in self.ops if phase is None or o.phase == phase)

    @property
    def kernels(self) -> int:
        return len(self.ops)


def _nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def _compute_dtype(packet, out_tensors: list[torch.Tensor]) -> str:
    dtype = out_tensors[0].dtype if out_tensors else torch.float32
    if dtype == torch.float16:
        return "fp16"
    if dtype == torch.bfloat16:
        return "bf16"
    # PyTorch's defaults: cuDNN convolutions use TF32, cuBLAS fp32 matmuls do not
    return "tf32" if packet in _CONV_OPS else "fp32"


class CostCounter(TorchDispatchMode):
    """Records an OpCost for every kernel-running op while active; `phase` is set by the caller."""

    def __init__(self) -> None:
        super().__init__()
        register_cpu_attention_flops()
        self.phase = PHASES[0]
        self.cost = StepCost()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if not runs_kernel(func):
            return out
        packet = func._overloadpacket
        formula = flop_counter.flop_registry.get(packet)
        flops = int(formula(*args, **kwargs, out_val=out)) if formula is not None else 0
        inputs = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        outputs = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
        if packet in _GATHER_OPS:  # reads only the gathered rows of its source, not all of it
            inputs = inputs[1:]
            moved = 2 * sum(_nbytes(t) for t in outputs) + sum(_nbytes(t) for t in inputs)
        else:
            moved = sum(_nbytes(t) for t in inputs) + sum(_nbytes(t) for t in outputs)
        self.cost.ops.append(OpCost(self.phase, flops, moved, _compute_dtype(packet, outputs)))
        return out
