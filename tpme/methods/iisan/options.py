"""IISAN's options and its layer schedule: which hidden states each side network reads."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from tpme.errors import TpmeError


STORAGE = {"fp32": (np.float32, torch.float32), "fp16": (np.float16, torch.float16), "bf16": (np.int16, torch.bfloat16)}  # bf16 kept as raw bits


def storage_dtype(option: str, precision: str) -> str:
    """`auto` stores what the run computes in: fp16/bf16 under autocast, else fp32."""
    name = precision if option == "auto" else option
    if name not in STORAGE:
        raise TpmeError(f"unknown cache dtype {option!r}", f"use auto, {', '.join(STORAGE)}")
    return name


@dataclass(frozen=True)
class IisanOptions:
    stride: int = 2  # use hidden states 0, stride, 2*stride, ..., L
    layers: tuple[int, ...] = ()  # explicit hidden-state indices for both backbones (overrides stride)
    bottleneck: int = 64
    # the official code's build (set by the recommendation scenario's official protocol): SAN blocks
    # normal(0, 0.01) with zero biases, per-network heads and gates (each trained at its own rate),
    # uncached: backbones in train mode and every used layer's full hidden states kept until backward;
    # cached: both frozen backbones kept on the device, every sample's states read from per-item files
    official: bool = False

    def __post_init__(self) -> None:
        if self.bottleneck < 1:
            raise TpmeError(f"iisan bottleneck must be at least 1, got {self.bottleneck}")
        if self.stride < 1:
            raise TpmeError(f"iisan stride must be at least 1, got {self.stride}")
        if list(self.layers) != sorted(set(self.layers)):
            raise TpmeError(f"iisan layers {list(self.layers)} must be increasing and distinct")


def layer_schedule(text_layers: int, image_layers: int, o: IisanOptions) -> tuple[list[int], list[int]]:
    """Hidden-state indices (0 = embedding output) read from each backbone, one per step."""
    if o.layers:
        bad = [l for l in o.layers if not 0 <= l <= min(text_layers, image_layers)]
        if bad:
            raise TpmeError(f"iisan layers {bad} are outside 0..{min(text_layers, image_layers)}", "hidden state 0 is the embedding output, L the last layer")
        return list(o.layers), list(o.layers)
    deepest = max(text_layers, image_layers)
    ref = range(0, deepest + 1, o.stride)
    return [round(l * text_layers / deepest) for l in ref], [round(l * image_layers / deepest) for l in ref]


@dataclass(frozen=True)
class IisanCachedOptions(IisanOptions):
    cache_dtype: str = "auto"  # auto (the run's precision), fp32, fp16, bf16
    cache_batch_size: int = 256  # items per backbone pass while building

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cache_batch_size < 1:
            raise TpmeError(f"cache_batch_size must be at least 1, got {self.cache_batch_size}")
        storage_dtype(self.cache_dtype, "fp32")
