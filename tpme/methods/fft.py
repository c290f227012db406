"""Full fine-tuning: every weight trains (the upper bound of cost)."""
from tpme.methods.registry import Method, register_method
from tpme.models.backbones import Backbones
from tpme.models.item_tower import DualEncoderTower, ItemTower


@register_method("fft", "Full fine-tuning: both backbones, heads and user encoder all train")
class FullFineTuning(Method):
    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        backbones.text.requires_grad_(True)
        backbones.image.requires_grad_(True)
        return DualEncoderTower(backbones, embed_dim)
