"""BitFit: only the bias terms of both backbones train (with the heads and user encoder)."""
from __future__ import annotations

from torch import nn

from tpme.errors import TpmeError
from tpme.methods.registry import Method, register_method
from tpme.models.backbones import Backbones
from tpme.models.item_tower import DualEncoderTower, ItemTower


@register_method("bitfit", "BitFit: every bias term of both backbones (LayerNorm biases included); + heads")
class BitFit(Method):
    scenarios = frozenset({"recommendation", "causal-lm"})

    def adapt(self, model: nn.Module) -> nn.Module:
        biases = 0
        for name, p in model.named_parameters():
            p.requires_grad_(name.endswith("bias"))
            biases += name.endswith("bias")
        if not biases:
            kind = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
            raise TpmeError(f"bitfit: the {kind} model has no bias terms, so nothing would train", "use a model with biases (Qwen2 has them in q/k/v), or another method")
        return model

    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        for model in (backbones.text, backbones.image):
            for name, p in model.named_parameters():
                p.requires_grad_(name.endswith("bias"))
        return DualEncoderTower(backbones, embed_dim)
