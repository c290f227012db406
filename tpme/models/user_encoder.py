"""SASRec user encoder shared by every method (DESIGN section 2)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SelfAttention(nn.Module):
    """Multi-head attention with bias-free Q/K/V/O projections."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Attention and FFN (e -> 4e -> e, ReLU), each followed by residual + LayerNorm."""

    def __init__(self, dim: int, heads: int, dropout: float):
        super().__init__()
        self.attn = SelfAttention(dim, heads, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Linear(4 * dim, dim))
        self.norm2 = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.drop(self.attn(x, mask)))
        return self.norm2(x + self.drop(self.ffn(x)))


class UserEncoder(nn.Module):
    def __init__(self, dim: int, max_seq_len: int, blocks: int = 2, heads: int = 2, dropout: float = 0.1):
        super().__init__()
        self.positions = nn.Embedding(max_seq_len, dim)
        self.norm = nn.LayerNorm(dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, dropout) for _ in range(blocks))

    def forward(self, items: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """items [B, L, e] (left-padded), valid [B, L] bool -> user states [B, L, e]."""
        b, n, _ = items.shape
        pos = torch.arange(n, device=items.device)
        x = self.drop(self.norm(items + self.positions(pos)[None]))
        causal = torch.ones(n, n, dtype=torch.bool, device=items.device).tril()
        # causal + padding; a padded query still sees itself so no softmax row is empty
        mask = (causal[None] & valid[:, None, :]) | torch.eye(n, dtype=torch.bool, device=items.device)[None]
        mask = mask[:, None]
        for block in self.blocks:
            x = block(x, mask)
        return x
