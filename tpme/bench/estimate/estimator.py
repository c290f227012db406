"""The GPU-free estimate of one method at one configuration: build fake, run fake steps.

Adam's state is created first (the real harness's warm-up steps do that), by one
optimizer step on zero gradients, which is much cheaper than a whole warm-up step.
Then one training step runs under the memory tracker and the cost counter together
(neither allocates nor times anything, so they do not disturb each other).
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from tpme.bench.estimate.attention import gpu_attention
from tpme.bench.estimate.cost import CostCounter, StepCost
from tpme.bench.estimate.fake_model import DataShape, build_meta_model, fake_batch, fakify, synthetic_batch
from tpme.bench.estimate.memory import MemoryEstimate, TrainableMemTracker, peak_breakdown
from tpme.bench.estimate.shadow import KnownValues
from tpme.bench.estimate.step import training_step
from tpme.bench.graphs import would_capture
from tpme.config import RunConfig
from tpme.datasets.batching import TrainBatch
from tpme.methods.registry import Method


@dataclass(frozen=True)
class StepEstimate:
    """Device-independent facts of one training step."""

    memory: MemoryEstimate
    cost: StepCost
    trainable_params: int
    total_params: int
    batch_users: int
    batch_items: int  # unique items embedded per step (C)
    wall_s: float  # how long the estimate itself took
    graphed: bool  # the harness would replay forward and backward from CUDA graphs (target cuda)
    graph_eager_kernels: int  # kernels a graphed step still launches eagerly besides the optimizer's


def prime_optimizer(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter]) -> None:
    """Create the optimizer's state as after a first step: one step on zero gradients."""
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def estimate_step(cfg: RunConfig, method: Method, data: DataShape, batch: TrainBatch | None = None, target: str = "cuda") -> StepEstimate:
    """Peak memory and op costs of one steady-state training step.

    `batch`: a collated batch to use (its shapes; small index tensors' values); None
    synthesises the config's largest batch. `target`: "cuda" runs fused Adam and fused
    attention (`gpu_attention`) as the harness does on a GPU; "cpu" runs exactly what a
    CPU run does, to compare with a CPU measurement.
    """
    t0 = time.perf_counter()
    model, image_size = build_meta_model(cfg, method, data)
    mode, known = FakeTensorMode(), KnownValues()
    fakify(model, mode)
    params = {id(p): p for p in model.parameters()}.values()
    trainable = [p for p in params if p.requires_grad]
    if batch is None:
        batch = synthetic_batch(cfg.train.batch_size, cfg.data.max_seq_len, cfg.data.text_len, image_size, model.tower.needs)
    fb = fake_batch(batch, mode, known)
    batch_tensors = [t for t in (fb.seq_index, fb.own, fb.log_pop, *vars(fb.items).values()) if isinstance(t, torch.Tensor)]
    model.train()
    optimizer = torch.optim.Adam(trainable, lr=cfg.train.lr, fused=target == "cuda")

    with mode:
        prime_optimizer(optimizer, trainable)
    tracker, counter = TrainableMemTracker(), CostCounter()
    tracker.track_external(model, optimizer, *batch_tensors)

    def on_phase(phase: str) -> None:
        counter.phase = phase

    attention = gpu_attention() if target == "cuda" else contextlib.nullcontext()
    with attention, mode, tracker, known, counter:
        training_step(model, optimizer, fb, cfg.train.precision, on_phase)
    return StepEstimate(
        memory=peak_breakdown(tracker),
        cost=counter.cost,
        trainable_params=sum(p.numel() for p in trainable),
        total_params=sum(p.numel() for p in params),
        batch_users=int(fb.seq_index.shape[0]),
        batch_items=int(fb.log_pop.shape[0]),
        wall_s=time.perf_counter() - t0,
        graphed=target == "cuda" and would_capture(cfg, method, model.tower),
        graph_eager_kernels=len(batch_tensors),  # one host-to-device copy per batch tensor; .grad takes the graph's gradient buffers as they are
    )
