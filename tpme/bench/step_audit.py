"""What one training step dispatches: kernel-running ops and host-device synchronisations.

On a GPU every kernel-running op is one launch, so for a small step (cached IISAN) the
count is the floor of its time when run eagerly. A synchronising op (a tensor read on
the host, a data-dependent output shape) stalls the launch queue and makes the step
impossible to capture as a CUDA graph. Both are properties of the code, not of the
machine, so they are counted exactly on a CPU and hold on any device.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from tpme.estimate.cost import runs_kernel

aten = torch.ops.aten
# ops whose result the host must wait for: a value read back, or an output sized by data
SYNC_OPS = frozenset({
    aten._local_scalar_dense, aten.nonzero, aten.nonzero_static, aten.masked_select, aten.unique_consecutive,
    aten._unique2, aten.unique_dim, aten.is_nonzero, aten.equal, aten.allclose, aten.repeat_interleave,
})


@dataclass
class StepReport:
    kernels: int = 0
    syncs: Counter = field(default_factory=Counter)  # op name -> calls


class StepAudit(TorchDispatchMode):
    """Counts kernel-running ops and synchronising ops while active (backward included)."""

    def __init__(self) -> None:
        super().__init__()
        self.report = StepReport()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        packet = func._overloadpacket
        if packet in SYNC_OPS or (packet is aten.index and _has_bool_index(args)):
            self.report.syncs[str(func)] += 1
        if runs_kernel(func):
            self.report.kernels += 1
        return func(*args, **kwargs)


def _has_bool_index(args: tuple) -> bool:
    """x[mask] with a boolean mask: its output size is the mask's count, read on the host."""
    indices = args[1] if len(args) > 1 else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


def audit(step: Callable[[], object]) -> StepReport:
    """Run `step` once under the audit."""
    with StepAudit() as mode:
        step()
    return mode.report
