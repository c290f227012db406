"""LoRA with `loralib` layers replacing the query and value projections, pretrained weights copied in.

`merge_weights=False`: loralib would otherwise fold B·A into the frozen weight on eval()
and change a weight that must stay the pretrained one.
"""
from __future__ import annotations

import torch
from torch import nn

from tpme.methods._targets import either, targets_for
from tpme.methods.lora import LoraOptions
from tpme.methods.registry import Method, register_method
from tpme.models.backbones import Backbones
from tpme.models.item_tower import DualEncoderTower, ItemTower


def replace_with_loralib(model: nn.Module, pattern: str, o: LoraOptions) -> int:
    import loralib  # optional: only this method needs it

    t = targets_for(model)
    names = t.matching(model, pattern)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        old: nn.Linear = getattr(parent, child)
        new = loralib.Linear(old.in_features, old.out_features, r=o.r, lora_alpha=o.alpha, lora_dropout=o.dropout, merge_weights=False, bias=old.bias is not None)
        new.to(device=old.weight.device, dtype=old.weight.dtype)
        with torch.no_grad():
            if old.weight.device.type != "meta":
                new.weight.copy_(old.weight)
                if old.bias is not None:
                    new.bias.copy_(old.bias)
        setattr(parent, child, new)
    return len(names)


@register_method("lora-loralib", "LoRA with loralib layers on query/value of every layer of both backbones, pretrained weights copied in; + heads")
class LoraLoralib(Method):
    Options = LoraOptions
    requires = {"loralib": "pip install loralib (or tpme's default dependencies)"}
    scenarios = frozenset({"recommendation", "causal-lm"})

    def adapt(self, model: nn.Module) -> nn.Module:
        import loralib

        t = targets_for(model)
        replace_with_loralib(model, either(t.query, t.value), self.options)
        loralib.mark_only_lora_as_trainable(model, bias="none")
        return model

    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        import loralib

        for model in (backbones.text, backbones.image):
            t = targets_for(model)
            replace_with_loralib(model, either(t.query, t.value), self.options)
            loralib.mark_only_lora_as_trainable(model, bias="none")
        return DualEncoderTower(backbones, embed_dim)
