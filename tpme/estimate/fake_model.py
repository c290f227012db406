"""A model with fake parameters, and a training batch of fake tensors.

Recipe (DESIGN section 7): the scenario assembles the model on the meta device (no weight
memory, no init compute; the method shapes any state its `prepare` would create), then
every parameter and buffer is swapped for a FakeTensor on the CPU. Fake tensors have
shapes, dtypes and storages that trackers see, but no data: nothing of model size is
ever allocated.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from tpme.estimate.shadow import KnownValues
from tpme.training.batches import map_tensors


def fakify(model: nn.Module, mode: FakeTensorMode) -> nn.Module:
    """Replace every parameter and buffer by a fake CPU tensor of its shape and dtype, in place.

    Tied tensors stay tied; `requires_grad` is kept. `Module.to()` cannot do this (it
    fails inside fake mode), so the module dicts are rewritten directly.
    """
    swapped: dict[int, torch.Tensor] = {}  # id of a meta tensor (kept alive by the model) -> its fake

    def fake(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in swapped:
            with mode:
                f = torch.empty(t.shape, dtype=t.dtype, device="cpu")
            swapped[id(t)] = nn.Parameter(f, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else f
        return swapped[id(t)]

    for module in model.modules():
        for registry in (module._parameters, module._buffers, *_tensor_dicts(module)):
            for name, t in list(registry.items()):
                if t is not None:
                    registry[name] = fake(t)
    return model


def _tensor_dicts(module: nn.Module) -> list[dict[str, torch.Tensor]]:
    """Dicts of plain tensors a module keeps outside its registries (peft's prompt-token indices per adapter)."""
    return [v for k, v in vars(module).items() if not k.startswith("_") and isinstance(v, dict) and v and all(isinstance(t, torch.Tensor) for t in v.values())]


def fake_batch(batch: Any, mode: FakeTensorMode, known: KnownValues) -> Any:
    """The same batch as fake tensors; small tensors keep their values in `known` (meta ones have none)."""

    def conv(t: torch.Tensor) -> torch.Tensor:
        with mode:
            f = torch.empty(t.shape, dtype=t.dtype, device="cpu")
        return known.know(f, t) if t.device.type != "meta" else f

    return map_tensors(batch, conv)
