"""Frozen backbones, trained heads: the lower bound of what any adaptation costs."""
from tpme.methods.registry import Method, register_method
from tpme.models.backbones import Backbones
from tpme.models.item_tower import DualEncoderTower, ItemTower


@register_method("frozen", "Backbones frozen and run without autograd; heads and user encoder train")
class Frozen(Method):
    refusals = {"causal-lm": "a frozen decoder has nothing to train: the causal-lm scenario adds no head of its own"}

    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        backbones.text.requires_grad_(False)
        backbones.image.requires_grad_(False)
        return DualEncoderTower(backbones, embed_dim, backbones_grad=False)
