"""LoRA on the query and value projections of every layer (of both backbones, or of the decoder), through `peft`."""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

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
    scenarios = frozenset({"recommendation", "causal-lm"})

    def _config(self, model: nn.Module):
        from peft import LoraConfig

        o, t = self.options, targets_for(model)
        return LoraConfig(r=o.r, lora_alpha=o.alpha, lora_dropout=o.dropout, target_modules=either(t.query, t.value), bias="none")

    def adapt(self, model: nn.Module) -> nn.Module:
        return apply_peft(model, self._config(model), "lora")

    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        wrapped = [apply_peft(model, self._config(model), "lora") for model in (backbones.text, backbones.image)]
        return DualEncoderTower(Backbones(*wrapped), embed_dim)
