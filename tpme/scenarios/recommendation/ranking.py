"""Full-ranking metrics: the target's rank among all items, HR@K and NDCG@K.

Masked candidates carry a score of -inf. The rank is 0-based: the number of candidates
scored above the target plus half (rounded down) of the others tied with it, so a
constant scorer neither wins nor loses by tie order. A NaN never helps: a NaN target
ranks last and a NaN candidate counts as above the target (the evaluator refuses
non-finite scores before ranking; this keeps the arithmetic sound on its own).
"""
from __future__ import annotations

import torch


def target_ranks(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """scores [B, N], targets [B] column indices -> 0-based ranks [B] (int64)."""
    t = scores.gather(1, targets[:, None])
    greater = (scores > t).sum(1) + torch.isnan(scores).sum(1)
    ties = ((scores == t).sum(1) - 1).clamp_min(0)
    last = torch.full_like(greater, scores.shape[1] - 1)
    return torch.where(torch.isnan(t[:, 0]), last, greater + ties // 2)


def hit_ndcg(ranks: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-user hit (rank < k) and NDCG (1 / log2(rank + 2) when a hit, else 0)."""
    hit = ranks < k
    ndcg = torch.where(hit, 1.0 / torch.log2(ranks.double() + 2.0), torch.zeros((), dtype=torch.float64))
    return hit.double(), ndcg


def mask_history(scores: torch.Tensor, histories: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Set to -inf, in place, the padding column 0 and every history item except the target.

    histories [B, L] (0 = padding), targets [B]. A repeated purchase of a history item
    stays rankable: only items other than the target are removed.
    """
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask.scatter_(1, histories, True)
    mask[:, 0] = True
    mask[torch.arange(len(targets), device=scores.device), targets] = False
    return scores.masked_fill_(mask, float("-inf"))


def mask_whole_history(scores: torch.Tensor, histories: torch.Tensor) -> torch.Tensor:
    """Set to -inf, in place, the padding column 0 and every history item, a target bought
    before included (the official code's evaluation: that user can only miss)."""
    mask = torch.zeros_like(scores, dtype=torch.bool)
    mask.scatter_(1, histories, True)
    mask[:, 0] = True
    return scores.masked_fill_(mask, float("-inf"))
