"""LoRA on the query and value projections of every layer of both backbones, through `peft`."""
from __future__ import annotations

from dataclasses import dataclass

from tpme.errors import TpmeError
from tpme.methods._peft import apply_peft
from tpme.methods._targets import either, targets_for
from tpme.methods.registry import Method, register_method
from tpme.models.backbones import Backbones
from tpme.models.item_tower import DualEncoderTower, ItemTower


@dataclass(frozen=True)
class LoraOptions:
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.r < 1:
            raise TpmeError(f"LoRA rank r must be at least 1, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise TpmeError(f"LoRA dropout must be in [0, 1), got {self.dropout}")


@register_method("lora", "LoRA (peft) r=8 on the query and value projections of every layer of both backbones; + heads")
class Lora(Method):
    Options = LoraOptions

    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        from peft import LoraConfig

        o = self.options
        wrapped = []
        for model in (backbones.text, backbones.image):
            t = targets_for(model)
            config = LoraConfig(r=o.r, lora_alpha=o.alpha, lora_dropout=o.dropout, target_modules=either(t.query, t.value), bias="none")
            wrapped.append(apply_peft(model, config, "lora"))
        return DualEncoderTower(Backbones(*wrapped), embed_dim)
