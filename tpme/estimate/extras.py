"""The epoch's work besides training, where a protocol has some (the official code's
validation, test and checkpoint), on the same fake model the step estimate built.

Each forward-only piece of the scenario's plan (one batch of items through the item
tower, one batch of users scored) runs once in eval mode without autograd under the cost
counter; its time is that batch's cost repeated as often as the part needs it
(predict.extras_times_s). The checkpoint is the bytes of the model's state dict and the
optimizer's state, as `torch.save` writes them, at an assumed disk write bandwidth.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from tpme.estimate.attention import attention_for
from tpme.estimate.cost import CostCounter, StepCost
from tpme.estimate.fake_model import fake_batch
from tpme.estimate.shadow import KnownValues
from tpme.scenarios.base import EpochExtrasPlan


@dataclass(frozen=True)
class PieceCost:
    part: str  # validation, test
    cost: StepCost  # of one batch
    repeats: float  # batches the part runs (the last one partial: fractional)


@dataclass(frozen=True)
class ExtrasEstimate:
    pieces: tuple[PieceCost, ...]
    checkpoint_bytes: int | None  # None: the protocol saves no checkpoint per epoch

    @property
    def parts(self) -> tuple[str, ...]:
        names = dict.fromkeys(p.part for p in self.pieces)
        return (*names, "checkpoint") if self.checkpoint_bytes is not None else tuple(names)


def state_bytes(model: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the model's state dict (each tensor once, as torch.save stores shared ones)
    and of every tensor in the optimizer's state."""
    model_tensors = {id(t): t for t in model.state_dict(keep_vars=True).values() if isinstance(t, torch.Tensor)}.values()
    optim_tensors = [v for state in optimizer.state.values() for v in state.values() if isinstance(v, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in (*model_tensors, *optim_tensors))


def estimate_extras(plan: EpochExtrasPlan, model: nn.Module, optimizer: torch.optim.Optimizer, mode: FakeTensorMode, known: KnownValues, target: str) -> ExtrasEstimate:
    """The cost of one batch of each piece, on the fake model (left in train mode)."""
    pieces = []
    model.eval()
    try:
        for piece in plan.pieces:
            inputs = fake_batch(piece.inputs, mode, known)
            counter = CostCounter()
            with attention_for(target), mode, known, counter, torch.no_grad():
                piece.run(model, inputs)
            pieces.append(PieceCost(piece.part, counter.cost, piece.repeats))
    finally:
        model.train()
    return ExtrasEstimate(tuple(pieces), state_bytes(model, optimizer) if plan.checkpoint else None)
