"""Batches as dataclasses of tensors (nested dataclasses allowed): one walk over their tensors.

A scenario's batch type is its own; the generic parts (moving to a device, pinning, CUDA
graph input buffers, fake copies for the estimator, the CPU memory tracker) only need the
tensors in a fixed order and a way to put new ones in their place.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import torch

B = TypeVar("B")


def map_tensors(batch: B, fn: Callable[[torch.Tensor], torch.Tensor | None]) -> B:
    """A copy of `batch` with every tensor replaced by fn(tensor); None fields stay None."""
    if isinstance(batch, torch.Tensor):
        return fn(batch)  # type: ignore[return-value]
    if not dataclasses.is_dataclass(batch):
        return batch
    changes = {f.name: map_tensors(getattr(batch, f.name), fn) for f in dataclasses.fields(batch)}
    return dataclasses.replace(batch, **changes)  # type: ignore[type-var]


def tensor_items(batch: Any, prefix: str = "") -> list[tuple[str, torch.Tensor]]:
    """(dotted path, tensor) of every tensor field, in field order."""
    out: list[tuple[str, torch.Tensor]] = []
    for f in dataclasses.fields(batch):
        v = getattr(batch, f.name)
        if isinstance(v, torch.Tensor):
            out.append((prefix + f.name, v))
        elif dataclasses.is_dataclass(v):
            out += tensor_items(v, f"{prefix}{f.name}.")
    return out


def tensors(batch: Any) -> list[torch.Tensor]:
    return [t for _, t in tensor_items(batch)]


def replace_tensors(batch: B, new: list[torch.Tensor]) -> B:
    """`batch` with its tensors, in `tensors(batch)` order, replaced by `new`."""
    it = iter(new)
    out = map_tensors(batch, lambda _: next(it))
    if next(it, None) is not None:
        raise ValueError("more tensors than the batch has fields")
    return out
