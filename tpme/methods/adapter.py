"""Houlsby serial bottleneck adapters after the attention output projection and the FFN
output projection of every layer of both backbones (DESIGN section 3).

BERT applies dropout, residual and LayerNorm after `output.dense`; the adapter therefore
wraps the projection itself, acting on its output before those, as in Houlsby et al.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tpme.errors import TpmeError
from tpme.methods._targets import either, targets_for
from tpme.methods.registry import Method, register_method
from tpme.models.backbones import Backbones
from tpme.models.item_tower import DualEncoderTower, ItemTower


class Bottleneck(nn.Module):
    """x + up(ReLU(down(x))); `up` starts at zero, so the adapted model starts as the pretrained one."""

    def __init__(self, dim: int, bottleneck: int):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.normal_(self.down.weight, std=0.01)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(torch.relu(self.down(x)))


class AdaptedLinear(nn.Module):
    """A frozen projection followed by its adapter."""

    def __init__(self, base: nn.Linear, bottleneck: int):
        super().__init__()
        self.base = base
        self.adapter = Bottleneck(base.out_features, bottleneck).to(base.weight.dtype)  # bf16 weights held without autocast need a bf16 adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.base(x))


def insert_adapters(model: nn.Module, bottleneck: int) -> int:
    """Wrap every attention-output and FFN-output projection; returns how many were wrapped."""
    t = targets_for(model)
    names = t.matching(model, either(t.attn_out, t.ffn_out))
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        setattr(parent, child, AdaptedLinear(getattr(parent, child), bottleneck))
    return len(names)


@register_method("adapter", "Houlsby adapters (d -> bottleneck -> d, ReLU, residual) after attention and FFN outputs of every layer; + heads")
class Adapter(Method):
    @dataclass(frozen=True)
    class Options:
        bottleneck: int = 64

        def __post_init__(self) -> None:
            if self.bottleneck < 1:
                raise TpmeError(f"adapter bottleneck must be at least 1, got {self.bottleneck}")

    scenarios = frozenset({"recommendation", "causal-lm"})

    def adapt(self, model: nn.Module) -> nn.Module:
        model.requires_grad_(False)
        if insert_adapters(model, self.options.bottleneck) == 0:
            raise TpmeError(f"no attention/FFN output projections found in {type(model).__name__}")
        return model

    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        for model in (backbones.text, backbones.image):
            model.requires_grad_(False)
            if insert_adapters(model, self.options.bottleneck) == 0:
                raise TpmeError(f"no attention/FFN output projections found in {type(model).__name__}")
        return DualEncoderTower(backbones, embed_dim)
