"""DistributedDataParallel's gradient buckets, for a step that runs wrapped in it.

DDP (without `gradient_as_bucket_view`) copies each gradient into a flat bucket for the
all-reduce and back: the buckets are a second, persistent copy of every trainable gradient.
After its first iteration DDP rebuilds them in the order backward produces gradients
(about the reverse of the parameters' order), a first small bucket and then buckets of
`bucket_cap_mb`; torch's own assignment function gives the split, which decides how the
caching allocator packs them (the total is the trainable parameters' bytes either way).
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

BUCKET_CAP_BYTES = 25 * 2**20  # DDP's default bucket_cap_mb (25)


def bucket_sizes(trainable: list[nn.Parameter], find_unused_parameters: bool = False) -> list[tuple[torch.dtype, int]]:
    """(dtype, elements) of each steady-state bucket. DDP rebuilds them after its first iteration in
    the order backward produced the gradients (taken as the reverse of the parameters' order);
    with `find_unused_parameters` it never rebuilds and keeps its first split, made in the
    parameters' order."""
    if not trainable:
        return []
    order = list(trainable) if find_unused_parameters else list(reversed(trainable))
    limits = [dist._DEFAULT_FIRST_BUCKET_BYTES, BUCKET_CAP_BYTES]
    indices, _ = dist._compute_bucket_assignment_by_size(order, limits, [False] * len(order))
    buckets = [(order[group[0]].dtype, sum(order[i].numel() for i in group)) for group in indices]
    return buckets[::-1] if find_unused_parameters else buckets


def fake_buckets(trainable: list[nn.Parameter], mode: FakeTensorMode, find_unused_parameters: bool = False) -> list[torch.Tensor]:
    """The buckets as fake tensors on the estimate's fake device (no memory is allocated)."""
    with mode:
        return [torch.empty(numel, dtype=dtype, device="cpu") for dtype, numel in bucket_sizes(trainable, find_unused_parameters)]
