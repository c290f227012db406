"""The training step: one function that the harness times and the estimator runs on fake tensors.

forward under the precision's autocast (or the replay of a captured CUDA graph), backward
through the gradient scaler (fp16 on CUDA), optional gradient-norm clipping (unscaled
first), the optimizer step through the scaler, gradients set to None. `on_phase` is told
when each phase starts and when the step ends, so the timed loop marks its clocks and the
estimator attributes each op to its phase without a second copy of the sequence.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tpme.device import autocast
from tpme.training.batches import map_tensors

PHASES = ("forward", "backward", "optimizer")
END = "end"


def _ignore(_: str) -> None:
    return None


def train_step(
    model: nn.Module,
    batch: Any,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    device: torch.device,
    precision: str,
    grad_clip: float | None = None,
    loss_fn: Callable[[Any], torch.Tensor] | None = None,
    on_phase: Callable[[str], None] = _ignore,
) -> torch.Tensor:
    """One optimisation step on a batch already on the device; returns the loss (not synchronised).

    `loss_fn`: computes the loss instead of `model(batch)` under autocast (a CUDA graph replay).
    """
    on_phase("forward")
    if loss_fn is not None:
        loss = loss_fn(batch)
    else:
        with autocast(device, precision):
            loss = model(batch)
    on_phase("backward")
    scaler.scale(loss).backward()
    on_phase("optimizer")
    if grad_clip is not None:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], grad_clip)
    scaler.step(optimizer)
    scaler.update()
    optimizer.zero_grad(set_to_none=True)
    on_phase(END)
    return loss


@dataclass
class Trainer:
    """A model with its optimizer, scaler and settings: what the timed loop steps."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    precision: str
    grad_clip: float | None = None
    graphed_loss: Any = None  # training.graphs.GraphedLoss when the forward and backward are captured

    def to_device(self, batch: Any) -> Any:
        """A host batch on the device: into the graph's input buffers when captured."""
        if self.graphed_loss is not None:
            return self.graphed_loss.load(batch)
        return batch.to(self.device, non_blocking=True)

    def loss(self, batch: Any) -> torch.Tensor:
        """The training loss of a batch on the device (replays the CUDA graphs when captured)."""
        if self.graphed_loss is not None:
            return self.graphed_loss(batch)
        with autocast(self.device, self.precision):
            return self.model(batch)

    def step_on_device(self, batch: Any, on_phase: Callable[[str], None] = _ignore) -> torch.Tensor:
        return train_step(self.model, batch, self.optimizer, self.scaler, self.device, self.precision, self.grad_clip, self.graphed_loss, on_phase)

    def step(self, batch: Any) -> torch.Tensor:
        """One untimed step of a host batch (warm-up, memory tracking)."""
        return self.step_on_device(self.to_device(batch)).detach()


def to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Every tensor of a batch dataclass on `device` (for batches without their own `to`)."""
    return map_tensors(batch, lambda t: t.to(device, non_blocking=non_blocking))
