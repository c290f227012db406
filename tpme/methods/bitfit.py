"""BitFit: only the bias terms of both backbones train (with the heads and user encoder)."""
from __future__ import annotations

from tpme.methods.registry import Method, register_method
from tpme.models.backbones import Backbones
from tpme.models.item_tower import DualEncoderTower, ItemTower


@register_method("bitfit", "BitFit: every bias term of both backbones (LayerNorm biases included); + heads")
class BitFit(Method):
    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        for model in (backbones.text, backbones.image):
            for name, p in model.named_parameters():
                p.requires_grad_(name.endswith("bias"))
        return DualEncoderTower(backbones, embed_dim)
