"""CUDA graphs for the training step of methods whose step allows it (cached IISAN).

A cached-IISAN step does little arithmetic (8.7 GFLOP at the paper preset) in several
hundred small kernels (426), so run eagerly it is bound by kernel launches, not by the GPU. Capturing the loss's forward
and backward as CUDA graphs (`torch.cuda.make_graphed_callables`) replays all of them
with two launches. The optimizer step stays eager (fused Adam: a few kernels) so the
gradient scaler keeps its usual checks. Capture needs static shapes (the loader then
pads every batch to B users and B*(L+1) item slots), no host reads of device values
(the loss is a masked mean), and autocast without its cast cache.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from tpme.device import autocast, synchronize
from tpme.errors import TpmeError
from tpme.methods.registry import Method
from tpme.training.batches import replace_tensors, tensor_items


@dataclass
class GraphDecision:
    mode: str  # auto|on|off, as configured
    used: bool
    reason: str  # why not, or "captured"
    capture_s: float | None = None  # one-off, outside epoch time

    def to_dict(self) -> dict:
        return asdict(self)


def decide(mode: str, method: Method, part: nn.Module, device: torch.device, compiled: bool) -> GraphDecision:
    """Whether to capture this cell's step; `on` turns every obstacle into an error."""
    if mode == "off":
        return GraphDecision(mode, False, "off")
    if device.type != "cuda":
        reason: str | None = f"CUDA graphs need a CUDA device; this cell runs on {device.type}"
    elif compiled:
        reason = "--compile is on; the step is compiled instead"
    else:
        reason = method.cuda_graph_blocker(part)
    if reason is not None and mode == "on":
        raise TpmeError(f"--cuda-graphs on, but {method.name}'s step cannot be captured: {reason}", "use --cuda-graphs auto (captures where possible) or off")
    return GraphDecision(mode, reason is None, reason or "captured")


def would_capture(cuda_graphs: str, compiled: bool, method: Method, part: nn.Module) -> bool:
    """Whether a CUDA cell with these settings captures this method's step (what the estimator times)."""
    mode = "auto" if cuda_graphs == "on" else cuda_graphs  # on = auto that raises instead of falling back
    return decide(mode, method, part, torch.device("cuda"), compiled).used


class _FlatLoss(nn.Module):
    """The model's loss over a flat tuple of tensors: the only input a graph takes."""

    def __init__(self, model: nn.Module, rebuild: Callable[[tuple[torch.Tensor, ...]], Any]):
        super().__init__()
        self.model = model
        self.rebuild = rebuild

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(self.rebuild(tensors))


class GraphedLoss:
    """The loss's forward and backward captured on `sample`'s shapes, with its input buffers.

    `load` copies a batch from the host straight into the graph's input buffers (no
    device-side staging copy); calling the result with that batch replays the graphs.
    Later batches must have the sample's shapes and fields (a static loader's do).
    """

    def __init__(self, model: nn.Module, sample: Any, device: torch.device, precision: str):
        self.device = device
        on_device = sample.to(device)
        self.fields = [name for name, _ in tensor_items(on_device)]
        self.template = on_device
        self.inputs = tuple(t.clone() for t in self._tensors(on_device))  # owned: never aliases a caller's batch
        self.batch = self._rebuild(self.inputs)
        flat = _FlatLoss(model, self._rebuild)
        with autocast(device, precision, cache_enabled=False):
            self._graphed = torch.cuda.make_graphed_callables(flat, self.inputs)

    def _tensors(self, batch: Any) -> tuple[torch.Tensor, ...]:
        items = tensor_items(batch)
        if [name for name, _ in items] != self.fields:
            raise TpmeError("a batch does not have the fields of the batch the CUDA graph was captured on", "use the static loader with CUDA graphs")
        return tuple(t for _, t in items)

    def _rebuild(self, tensors: tuple[torch.Tensor, ...]) -> Any:
        return replace_tensors(self.template, list(tensors))

    def load(self, batch: Any) -> Any:
        """Copy `batch` (host, pinned on CUDA) into the input buffers; returns them as a batch."""
        host = self._tensors(batch)
        if any(h.dtype != s.dtype for h, s in zip(host, self.inputs)):  # uint8 pixels are normalised on the way
            host = self._tensors(batch.to(self.device, non_blocking=True))
        for static, h in zip(self.inputs, host):
            static.copy_(h, non_blocking=True)
        return self.batch

    def __call__(self, batch: Any) -> torch.Tensor:
        return self._graphed(*self._tensors(batch))


def prepare_graphs(decision: GraphDecision, model: nn.Module, sample: Any, device: torch.device, precision: str) -> GraphedLoss | None:
    """Capture (the decision says to); in `auto` a failed capture is recorded and the step stays eager."""
    t0 = time.perf_counter()
    try:
        loss = GraphedLoss(model, sample, device, precision)
    except (RuntimeError, AssertionError) as e:
        if decision.mode == "on":
            raise TpmeError(f"CUDA graph capture failed: {type(e).__name__}: {e}", "run with --cuda-graphs off (or auto, which falls back to eager and records why)") from e
        synchronize(device)
        decision.used, decision.reason = False, f"capture failed, ran eagerly: {type(e).__name__}: {e}"
        return None
    synchronize(device)
    decision.capture_s = time.perf_counter() - t0
    return loss
