"""The decoder a method adapts, with its next-token loss, and THE assembly of it (model ->
the method's adaptation), which training, the GPU-free estimate and `tpme params` all call."""
from __future__ import annotations

import torch
from torch import nn

from tpme.methods.registry import Method
from tpme.scenarios.base import Assembly
from tpme.scenarios.causal_lm.config import LmRunConfig
from tpme.scenarios.causal_lm.data import LmBatch
from tpme.scenarios.causal_lm.shapes import ModelSpec, build_model

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


class CausalLm(nn.Module):
    """The adapted decoder; forward returns the mean next-token loss over non-padding labels."""

    def __init__(self, lm: nn.Module):
        super().__init__()
        self.lm = lm

    def forward(self, batch: LmBatch) -> torch.Tensor:
        return self.lm(input_ids=batch.input_ids, attention_mask=batch.attention_mask, labels=batch.labels).loss


def assemble(cfg: LmRunConfig, method: Method, meta: bool = False) -> Assembly:
    """The decoder in the configured weight dtype, gradient checkpointing as asked, adapted by the method.

    meta=True: shapes only, on the meta device (no init compute, no weights read).
    `extras`: the decoder's config and the dtype of its weights."""
    dtype = DTYPES[cfg.train.weights_dtype]
    spec = ModelSpec.parse(cfg.model)

    base = build_model(spec, dtype, meta)
    if cfg.train.gradient_checkpointing:
        base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    # on meta, the method still runs on the CPU: initialisations that compute (BOFT's block
    # sizes) need real scalars; peft then moves each adapter to its base layer's (meta) device
    adapted = method.adapt(base)
    model = CausalLm(adapted)
    return Assembly(model, adapted, {"config": getattr(adapted, "config", None), "weights_dtype": cfg.train.weights_dtype})
