"""LoRA as the official IISAN code ran it: what the paper's LoRA figures measured.

The official code replaces every query and value projection of both backbones with a NEW
loralib-style `Linear(d, d, r=8)`: its frozen weight is freshly random, not the pretrained
one (nothing is copied in), its bias is new and trainable, lora_alpha keeps loralib's
default of 1 (scale 1/8) and there is no LoRA dropout. So the backbones lose their
pretrained Q/V, and 2 x 12 x 2 x 768 bias values train beside the LoRA matrices
(833,600 trainable at the paper's shapes against `lora`'s 796,736). Use `lora` for LoRA
as it is meant; this method exists to reproduce the paper's numbers and say why they are
what they are.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from tpme.errors import TpmeError
from tpme.methods._targets import either, targets_for
from tpme.methods.registry import Method, register_method
from tpme.models.backbones import Backbones
from tpme.models.item_tower import DualEncoderTower, ItemTower


class RandomFrozenLoraLinear(nn.Module):
    """y = x W^T + b + scale * x A^T B^T with W frozen and random (nn.Linear's init), b, A, B
    trainable; A Kaiming-uniform, B zero, as loralib initialises them."""

    def __init__(self, in_features: int, out_features: int, r: int, alpha: float, bias: bool):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features), requires_grad=False)
        self.bias = nn.Parameter(torch.empty(out_features)) if bias else None
        self.lora_A = nn.Parameter(torch.empty(r, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, r))
        self.scale = alpha / r
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1.0 / math.sqrt(in_features)
            nn.init.uniform_(self.bias, -bound, bound)
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias) + F.linear(F.linear(x, self.lora_A), self.lora_B) * self.scale


@register_method("lora-official", "LoRA as the official IISAN code ran it (the paper's LoRA figures): Q/V replaced by NEW random frozen layers, r=8, scale 1/8, Q/V biases trainable; + heads")
class LoraOfficial(Method):
    @dataclass(frozen=True)
    class Options:
        r: int = 8
        alpha: float = 1.0  # loralib's default lora_alpha: scale alpha / r = 1/8

        def __post_init__(self) -> None:
            if self.r < 1:
                raise TpmeError(f"LoRA rank r must be at least 1, got {self.r}")

    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        o = self.options
        for model in (backbones.text, backbones.image):
            model.requires_grad_(False)
            t = targets_for(model)
            for name in t.matching(model, either(t.query, t.value)):
                parent_name, _, child = name.rpartition(".")
                parent = model.get_submodule(parent_name)
                old: nn.Linear = getattr(parent, child)
                new = RandomFrozenLoraLinear(old.in_features, old.out_features, o.r, o.alpha, old.bias is not None)
                setattr(parent, child, new.to(device=old.weight.device, dtype=old.weight.dtype))
        return DualEncoderTower(backbones, embed_dim)
