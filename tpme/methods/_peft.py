"""Applying a `peft` config to one backbone, with failures turned into TpmeErrors."""
from __future__ import annotations

import warnings

from torch import nn

from tpme.errors import TpmeError


def apply_peft(model: nn.Module, config, label: str) -> nn.Module:
    """Wrap `model` in a PeftModel (pretrained weights kept and frozen); fail clearly when it cannot apply."""
    from peft import get_peft_model

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # transformers' deprecation notices raised inside peft
            wrapped = get_peft_model(model, config)
    except (ValueError, TypeError, KeyError, AttributeError, NotImplementedError, RuntimeError) as e:
        raise TpmeError(f"{label} cannot be applied to the {type(model).__name__} backbone: {e}") from e
    if sum(p.numel() for p in wrapped.parameters() if p.requires_grad) == 0:
        raise TpmeError(f"{label} adds no trainable parameters to the {type(model).__name__} backbone", "choose target modules that exist in it")
    return wrapped
