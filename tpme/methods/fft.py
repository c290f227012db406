"""Full fine-tuning: every weight trains (the upper bound of cost)."""
from torch import nn

from tpme.methods.registry import Method, register_method
from tpme.models.backbones import Backbones
from tpme.models.item_tower import DualEncoderTower, ItemTower


@register_method("fft", "Full fine-tuning: every weight trains (both backbones, heads and user encoder; or the whole decoder)")
class FullFineTuning(Method):
    scenarios = frozenset({"recommendation", "causal-lm"})

    def adapt(self, model: nn.Module) -> nn.Module:
        return model.requires_grad_(True)

    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        backbones.text.requires_grad_(True)
        backbones.image.requires_grad_(True)
        return DualEncoderTower(backbones, embed_dim)
