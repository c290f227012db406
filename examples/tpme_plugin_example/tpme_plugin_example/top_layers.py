"""Example plugin method `top-layers`: fine-tune only the last k transformer layers of both backbones.

A method is a class with a name, a description, an optional frozen `Options` dataclass
(filled from `--method-opt key=value`, converted by the field types) and `build_tower`,
which marks what trains and returns an item tower. Everything else (user encoder, loss,
timing, memory, parameter counting, TPME) is the harness's.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from tpme.errors import TpmeError
from tpme.methods import Method, register_method
from tpme.models.backbones import Backbones
from tpme.models.item_tower import DualEncoderTower, ItemTower


def layer_stack(model: nn.Module) -> nn.ModuleList:
    """The backbone's list of transformer layers (BERT: encoder.layer, ViT: layers)."""
    for module in model.modules():
        if isinstance(module, nn.ModuleList):
            return module
    raise TpmeError(f"{type(model).__name__} has no list of layers")


@register_method("top-layers", "plugin example: the last k layers of both backbones train (k an option); + heads")
class TopLayers(Method):
    @dataclass(frozen=True)
    class Options:
        k: int = 1

        def __post_init__(self) -> None:
            if self.k < 0:
                raise TpmeError(f"top-layers k must be non-negative, got {self.k}")

    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        for model in (backbones.text, backbones.image):
            model.requires_grad_(False)
            layers = layer_stack(model)
            for layer in list(layers)[len(layers) - self.options.k :] if self.options.k else []:
                layer.requires_grad_(True)
        return DualEncoderTower(backbones, embed_dim)
