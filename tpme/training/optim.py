"""The optimizer a cell trains with: Adam (the paper's) or AdamW with weight decay (peft's suite).

On CUDA the fused implementation: 2 kernels per step at the paper preset against 8 for the
multi-tensor default, as `tpme estimate` counts them; the estimate builds the same one.
"""
from __future__ import annotations

from collections.abc import Iterable

import torch

from tpme.errors import TpmeError

OPTIMIZERS = ("adam", "adamw")


def make_optimizer(params: Iterable[torch.nn.Parameter] | list[dict], kind: str, lr: float, weight_decay: float, fused: bool, foreach: bool | None = None) -> torch.optim.Optimizer:
    """`params`: parameters, or parameter groups (dicts with their own `lr`). `foreach=True`: the
    multi-tensor implementation, torch's own default on CUDA (an estimate on fake CPU tensors must ask for it)."""
    params = list(params)
    if not params:
        raise TpmeError("the method leaves no parameter to train", "check the method's options (target modules, layers)")
    if kind == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, fused=fused, foreach=foreach)
    if kind == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, fused=fused, foreach=foreach)
    raise TpmeError(f"unknown optimizer {kind!r}", f"use one of {', '.join(OPTIMIZERS)}")


def describe(optimizer: torch.optim.Optimizer) -> str:
    """How records name it: `Adam (fused)`, `AdamW (foreach)`, `AdamW (single-tensor)`."""
    impl = "fused" if optimizer.defaults.get("fused") else "foreach" if optimizer.defaults.get("foreach") else "single-tensor"
    return f"{type(optimizer).__name__} ({impl})"
