"""The multimodal sequential recommender: a method's item tower + the shared SASRec user encoder."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tpme.datasets.batching import TrainBatch
from tpme.models.item_tower import ItemTower
from tpme.models.user_encoder import UserEncoder


class Recommender(nn.Module):
    def __init__(self, tower: ItemTower, embed_dim: int, max_seq_len: int):
        super().__init__()
        self.tower = tower
        self.user_encoder = UserEncoder(embed_dim, max_seq_len)

    def forward(self, batch: TrainBatch) -> torch.Tensor:
        """In-batch softmax cross-entropy with logQ correction and own-sequence masking.

        Free of host synchronisation (no boolean indexing, no `.item()`): the loss is a
        masked mean over valid positions, so the step can be captured as a CUDA graph and
        never stalls the launch queue. Candidates marked not `real` (static-shape padding)
        are masked out of every row.
        """
        emb = self.tower(batch.items)  # [C, e]
        inputs, targets = batch.seq_index[:, :-1], batch.seq_index[:, 1:]
        valid = inputs >= 0
        x = emb[inputs.clamp(min=0)] * valid[..., None].to(emb.dtype)
        users = self.user_encoder(x, valid)  # [B, L, e]
        logits = (users @ emb.T).float() - batch.log_pop[None, None, :]  # [B, L, C]
        target = targets.clamp(min=0)
        candidates = torch.arange(emb.shape[0], device=emb.device)
        masked = batch.own[:, None, :] & (candidates[None, None, :] != target[..., None])
        if batch.real is not None:
            masked = masked | ~batch.real[None, None, :]
        logits = logits.masked_fill(masked, torch.finfo(logits.dtype).min)
        per_position = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
        weight = valid.flatten().to(per_position.dtype)
        return (per_position * weight).sum() / weight.sum()
