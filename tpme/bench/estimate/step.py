"""One training step on fake tensors, the same sequence of ops as `Trainer.step`.

Forward under the precision's autocast, backward, Adam step, gradients set to None.
Callers observe it through dispatch modes; `on_phase` tells them which phase runs.
"""
from __future__ import annotations

from collections.abc import Callable

import torch

from tpme.bench.device import autocast
from tpme.datasets.batching import TrainBatch
from tpme.models.recommender import Recommender

CPU = torch.device("cpu")


def training_step(model: Recommender, optimizer: torch.optim.Optimizer, batch: TrainBatch, precision: str, on_phase: Callable[[str], None] = lambda _: None) -> None:
    on_phase("forward")
    with autocast(CPU, precision):
        loss = model(batch.to(CPU))
    on_phase("backward")
    loss.backward()
    on_phase("optimizer")
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
