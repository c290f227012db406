"""Item towers: a method's part of the recommender, mapping N items to [N, e].

`DualEncoderTower` is the default of DESIGN section 3:
fuse(GELU(W_t · CLS_text_last), GELU(W_v · CLS_image_last)).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from tpme.datasets.batching import IMAGE, TEXT, ItemBatch, StateSource
from tpme.models.backbones import Backbones


class ItemTower(nn.Module):
    """Base class: `needs` names the modalities forward() reads from the ItemBatch.

    A tower that reads precomputed states (`STATES` in `needs`) gets their `state_source`
    from its method's prepare, and gives their per-item shapes for estimation."""

    needs: frozenset[str] = frozenset({TEXT, IMAGE})
    state_source: StateSource | None = None

    def state_shapes(self) -> dict[str, tuple[int, int]]:
        """modality -> (n_states, d) of the STATES it reads per item; empty when it reads none."""
        return {}

    def forward(self, items: ItemBatch) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


class ModalityHeads(nn.Module):
    """GELU(W_t · text_cls), GELU(W_v · image_cls), fused by Linear(2e -> e)."""

    def __init__(self, text_hidden: int, image_hidden: int, embed_dim: int):
        super().__init__()
        self.text_proj = nn.Linear(text_hidden, embed_dim)
        self.image_proj = nn.Linear(image_hidden, embed_dim)
        self.act = nn.GELU()
        self.fuse = nn.Linear(2 * embed_dim, embed_dim)

    def forward(self, text_cls: torch.Tensor, image_cls: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.act(self.text_proj(text_cls)), self.act(self.image_proj(image_cls))], dim=-1))


class DualEncoderTower(ItemTower):
    """Both backbones end to end, then the default heads.

    With `backbones_grad=False` the backbones run under no_grad: nothing upstream of
    the heads trains, so building an autograd graph through them would be waste.
    """

    def __init__(self, backbones: Backbones, embed_dim: int, backbones_grad: bool = True):
        super().__init__()
        self.text = backbones.text
        self.image = backbones.image
        self.heads = ModalityHeads(backbones.text_hidden, backbones.image_hidden, embed_dim)
        self.backbones_grad = backbones_grad

    def encode(self, items: ItemBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """[CLS] of the last layer of each backbone."""
        ctx = contextlib.nullcontext() if self.backbones_grad else torch.no_grad()
        with ctx:
            text = self.text(input_ids=items.input_ids, attention_mask=items.attention_mask).last_hidden_state[:, 0]
            image = self.image(pixel_values=items.pixels).last_hidden_state[:, 0]
        return text, image

    def forward(self, items: ItemBatch) -> torch.Tensor:
        return self.heads(*self.encode(items))
