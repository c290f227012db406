"""Where a cell runs: device resolution, synchronisation, autocast and loss scaling for a precision.

Below the methods, scenarios and the harness alike: methods use autocast and
synchronisation (IISAN's cache build) without importing the harness."""
from __future__ import annotations

import contextlib

import torch

from tpme.errors import TpmeError

AUTOCAST_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise TpmeError(f"unknown device {name!r}", "use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise TpmeError(f"device {name!r} asked for but no CUDA GPU is visible", "use --device cpu or auto")
    if device.type not in ("cpu", "cuda"):
        raise TpmeError(f"device type {device.type!r} is not supported", "use auto, cpu, cuda or cuda:N")
    return device


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(device: torch.device, precision: str, cache_enabled: bool = True) -> contextlib.AbstractContextManager:
    """fp32: no autocast; fp16/bf16: autocast on the device (fp16 on CPU is supported by torch).

    CUDA graph capture needs `cache_enabled=False`: cached casts would outlive the capture.
    """
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision], cache_enabled=cache_enabled)


def grad_scaler(device: torch.device, precision: str, device_type: str | None = None) -> torch.amp.GradScaler:
    """fp16 on CUDA needs loss scaling against gradient underflow; other precisions get a disabled scaler.

    `device_type`: where the scaler's own tensors live when that differs from the device it
    stands for (the estimator models a CUDA step on fake CPU tensors).
    """
    return torch.amp.GradScaler(device_type or device.type, enabled=precision == "fp16" and device.type == "cuda")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    return platform.processor() or platform.machine() or "cpu"
