"""Attention as a GPU runs it, for estimates that target CUDA.

On a GPU, `scaled_dot_product_attention` runs a fused kernel (flash or memory-efficient)
that keeps only the output and the row log-sum-exp for backward. On the CPU, with
dropout on (training), it takes the math path, which keeps the S x S probabilities and
the dropout mask of every layer: at ViT-base/224 and batch 32 that is tens of GB a
GPU never allocates. `gpu_attention()` routes SDPA to the CPU's fused kernel, whose
saved tensors and FLOPs match the GPU kernels'.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F


def _fused_sdpa(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key, value = key.repeat_interleave(repeat, -3), value.repeat_interleave(repeat, -3)
    if attn_mask is not None and attn_mask.dtype == torch.bool:  # what SDPA does before its fused kernels
        attn_mask = torch.zeros(attn_mask.shape, dtype=query.dtype, device=query.device).masked_fill(~attn_mask, float("-inf"))
    elif attn_mask is not None:
        attn_mask = attn_mask.to(query.dtype)
    out, _ = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value, dropout_p, is_causal, attn_mask=attn_mask, scale=scale)
    return out


@contextlib.contextmanager
def gpu_attention() -> Iterator[None]:
    """While active, `F.scaled_dot_product_attention` runs the fused kernel (dropout included)."""
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _fused_sdpa
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original


def attention_for(target: str) -> contextlib.AbstractContextManager:
    """The attention an estimate for `target` runs: the GPU's fused kernel for "cuda", the CPU's own otherwise."""
    return gpu_attention() if target == "cuda" else contextlib.nullcontext()
