"""Peak tensor memory of a training step by category, from MemTracker on fake tensors.

`torch.distributed._tools.mem_tracker.MemTracker` attributes every storage to
parameters, buffers, gradients, optimizer state, activations (made in forward),
temporaries (made in backward) or other (here: the batch), and snapshots the split at
the peak. In torch 2.13 it registers gradient hooks on every parameter, which fails on
frozen ones; `TrainableMemTracker` hooks only parameters that train. It also keeps only
the global peak: MemTracker's per-module peaks walk every module on every op, which
took two thirds of a paper-preset estimate and are not reported.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.distributed._tools.mem_tracker import _TOTAL_KEY, MemTracker, _MemRefType, _State, _UpdateType

from tpme.estimate.allocator import ALLOC, FREE

BREAKDOWN_KEYS = {
    _MemRefType.PARAM: "parameters",
    _MemRefType.BUFFER: "buffers",
    _MemRefType.GRAD: "gradients",
    _MemRefType.OPT: "optimizer_state",
    _MemRefType.ACT: "activations",
    _MemRefType.TEMP: "temporaries",
    _MemRefType.OTH: "batch",
}


class TrainableMemTracker(MemTracker):
    """MemTracker that installs gradient hooks on trainable parameters only, and logs every
    storage it adds or drops (`events`: (alloc|free, handle, bytes), for the allocator replay)."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, int, int]] = []
        self._handles: dict[int, int] = {}  # id of a live storage's info -> a handle never reused

    def _update_snap(self, u_type: _UpdateType, winfo: Any, old_mem_consumed: int | None = None, old_reftype: Any = None) -> None:
        if u_type in (_UpdateType.DEL, _UpdateType.SIZE) and id(winfo) in self._handles:
            self.events.append((FREE, self._handles.pop(id(winfo)), 0))
        if u_type in (_UpdateType.ADD, _UpdateType.SIZE):
            self._handles[id(winfo)] = handle = len(self.events)
            self.events.append((ALLOC, handle, winfo.mem_consumed))
        super()._update_snap(u_type, winfo, old_mem_consumed, old_reftype)

    def _track_module_params_and_buffers(self, module: nn.Module, install_grad_hooks: bool = True) -> tuple[int, int]:
        param_mem, buffer_mem = super()._track_module_params_and_buffers(module, install_grad_hooks=False)
        if install_grad_hooks:
            for param in module.parameters():
                if param.requires_grad and self._param_to_grad_hook_handles.get(param, None) is None:
                    self._param_to_grad_hook_handles[param] = (
                        param.register_hook(self._on_grad),
                        param.register_post_accumulate_grad_hook(lambda p: self._on_grad(p.grad)),
                    )
        return param_mem, buffer_mem

    def _update_peak_stats(self, peak_state: _State) -> None:
        for dev, snap in self._curr_mem_snap.items():
            if self._peak_mem.get(dev, 0) < snap[_TOTAL_KEY]:
                self._peak_mem[dev] = snap[_TOTAL_KEY]
                self._peak_mem_snap[dev] = dict(snap)

    def _on_grad(self, grad: torch.Tensor) -> None:
        self._update_and_maybe_create_winfos(grad, _MemRefType.GRAD)

    def track_gradient_copies(self, *tensors: torch.Tensor) -> None:
        """Count tensors that hold gradients outside `.grad` (DDP's buckets) as gradients."""
        for t in tensors:
            self._update_and_maybe_create_winfos(t, _MemRefType.GRAD)


@dataclass(frozen=True)
class MemoryEstimate:
    peak_bytes: int
    breakdown: dict[str, int]  # category -> bytes live at the peak


def peak_breakdown(tracker: MemTracker) -> MemoryEstimate:
    """The peak and its split by category (one device: the fake CPU)."""
    snaps = tracker.get_tracker_snapshot("peak")
    if not snaps:
        return MemoryEstimate(0, dict.fromkeys(BREAKDOWN_KEYS.values(), 0))
    if len(snaps) != 1:
        raise RuntimeError(f"tensors on {len(snaps)} devices during the estimate; expected one")
    snap = next(iter(snaps.values()))
    breakdown = {name: int(snap.get(ref, 0)) for ref, name in BREAKDOWN_KEYS.items()}
    return MemoryEstimate(int(snap["Total"]), breakdown)
