"""Houlsby serial bottleneck adapters after the attention output projection and the FFN
output projection of every layer of both backbones (DESIGN section 3).

BERT applies dropout, residual and LayerNorm after `output.dense`; the adapter therefore
wraps the projection itself, acting on its output before those, as in Houlsby et al.
The official IISAN code (option `official`, set by the recommendation scenario's official
protocol) puts it after that dropout instead and starts the up-projection at normal(0, 0.01).
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
    """x + up(ReLU(down(x))); `up` starts at zero, so the adapted model starts as the pretrained one
    (up_std > 0: normal(0, up_std), as the official IISAN code)."""

    def __init__(self, dim: int, bottleneck: int, up_std: float = 0.0):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)
        nn.init.normal_(self.down.weight, std=0.01)
        nn.init.zeros_(self.down.bias)
        if up_std > 0:
            nn.init.normal_(self.up.weight, std=up_std)
        else:
            nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(torch.relu(self.down(x)))


class AdaptedLinear(nn.Module):
    """A frozen projection (or, official, the dropout after it) followed by its adapter."""

    def __init__(self, base: nn.Module, bottleneck: int, dim: int | None = None, up_std: float = 0.0):
        super().__init__()
        self.base = base
        weight = next(base.parameters(), None)  # the official placement wraps a Dropout, which has none
        self.adapter = Bottleneck(dim or base.out_features, bottleneck, up_std)
        if weight is not None:
            self.adapter.to(weight.dtype)  # bf16 weights held without autocast need a bf16 adapter

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.adapter(self.base(x))


OFFICIAL_UP_STD = 0.01


def insert_adapters(model: nn.Module, bottleneck: int, official: bool = False) -> int:
    """Wrap every attention-output and FFN-output projection; returns how many were wrapped.
    official: where the projection's module applies its own dropout next (BERT), the adapter
    follows that dropout, and the up-projection starts at normal(0, 0.01)."""
    t = targets_for(model)
    names = t.matching(model, either(t.attn_out, t.ffn_out))
    up_std = OFFICIAL_UP_STD if official else 0.0
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name)
        base = getattr(parent, child)
        if official and isinstance(getattr(parent, "dropout", None), nn.Dropout):
            parent.dropout = AdaptedLinear(parent.dropout, bottleneck, base.out_features, up_std)
        else:
            setattr(parent, child, AdaptedLinear(base, bottleneck, up_std=up_std))
    return len(names)


@register_method("adapter", "Houlsby adapters (d -> bottleneck -> d, ReLU, residual) after attention and FFN outputs of every layer; + heads")
class Adapter(Method):
    @dataclass(frozen=True)
    class Options:
        bottleneck: int = 64
        official: bool = False  # the official IISAN code's placement and init (set by the official protocol)

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
            if insert_adapters(model, self.options.bottleneck, self.options.official) == 0:
                raise TpmeError(f"no attention/FFN output projections found in {type(model).__name__}")
        return DualEncoderTower(backbones, embed_dim)
