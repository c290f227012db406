"""The GPU-free estimate of one method at one configuration: build fake, run the harness's step.

The scenario assembles the model on the meta device (its one assembly function), every
parameter becomes a fake tensor, and the harness's own step function
(`training.step.train_step`: autocast, gradient scaler, clipping, optimizer) runs on fake
tensors with the scenario's own optimizer. Adam's state is created first (the harness's
warm-up steps do that) by one optimizer step on zero gradients, much cheaper than a whole
warm-up step. The step then runs under the memory tracker and the cost counter together
(neither allocates nor times anything, so they do not disturb each other). A scenario whose
step runs under DistributedDataParallel (`Scenario.data_parallel`) adds DDP's gradient
buckets, a persistent second copy of the trainable gradients (ddp.py). Where the
scenario's protocol does more per epoch (official: validation, test, checkpoint), its
forward-only passes run afterwards on the same fake model (extras.py).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from tpme.device import grad_scaler
from tpme.estimate.allocator import replay
from tpme.estimate.attention import attention_for
from tpme.estimate.cost import CostCounter, StepCost
from tpme.estimate.ddp import fake_buckets
from tpme.estimate.extras import ExtrasEstimate, estimate_extras
from tpme.estimate.fake_model import fake_batch, fakify
from tpme.estimate.memory import MemoryEstimate, TrainableMemTracker, peak_breakdown
from tpme.estimate.shadow import KnownValues
from tpme.methods.registry import Method
from tpme.scenarios.base import DataShape, Scenario
from tpme.training.batches import tensor_items
from tpme.training.graphs import would_capture
from tpme.training.step import PHASES, train_step

CPU = torch.device("cpu")


@dataclass(frozen=True)
class StepEstimate:
    """Device-independent facts of one training step."""

    memory: MemoryEstimate
    reserved_bytes: int  # the caching allocator's peak reserved memory over a steady-state step (allocator.py)
    cost: StepCost
    trainable_params: int
    total_params: int
    batch_shapes: dict[str, list[int]]  # every batch tensor's shape, by field
    wall_s: float  # how long the estimate itself took
    graphed: bool  # the harness would replay forward and backward from CUDA graphs (target cuda)
    graph_eager_kernels: int  # kernels a graphed step still launches eagerly besides the optimizer's
    gradient_bucket_bytes: int = 0  # DDP's buckets (counted in the breakdown's gradients); 0 without DDP
    extras: ExtrasEstimate | None = None  # the epoch's work besides training, where the protocol has some


def prime_optimizer(optimizer: torch.optim.Optimizer, params: list[torch.nn.Parameter]) -> None:
    """Create the optimizer's state as after a first step: one step on zero gradients."""
    for p in params:
        p.grad = torch.zeros_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def estimate_step(scenario: Scenario, cfg: Any, method: Method, data: DataShape, batch: Any = None, target: str = "cuda", epoch_extras: bool = True) -> StepEstimate:
    """Peak memory and op costs of one steady-state training step.

    `batch`: a collated batch to use (its shapes; small index tensors' values); None
    synthesises the config's largest batch. `target`: "cuda" runs fused optimizers, fused
    attention (`gpu_attention`) and fp16 loss scaling as the harness does on a GPU; "cpu"
    runs exactly what a CPU run does, to compare with a CPU measurement. `epoch_extras`:
    also cost the protocol's per-epoch work besides training (only epoch times use it).
    """
    t0 = time.perf_counter()
    assembly = scenario.assemble(cfg, method, data, meta=True)
    model = assembly.model
    mode, known = FakeTensorMode(), KnownValues()
    fakify(model, mode)
    params = {id(p): p for p in model.parameters()}.values()
    trainable = [p for p in params if p.requires_grad]
    if batch is None:
        batch = scenario.synthetic_batch(cfg, assembly)
    fb = fake_batch(batch, mode, known)
    named = tensor_items(fb)
    model.train()
    optimizer = scenario.optimizer(cfg, model, fused=target == "cuda")
    precision = scenario.autocast_precision(cfg)
    scaler = grad_scaler(torch.device(target), precision, device_type=CPU.type)

    with mode:
        prime_optimizer(optimizer, trainable)
    tracker, counter = TrainableMemTracker(), CostCounter()
    tracker.track_external(model, optimizer, *(t for _, t in named))
    ddp = scenario.data_parallel(cfg, method.name)
    buckets = fake_buckets(trainable, mode, ddp.find_unused_parameters) if ddp else []
    tracker.track_gradient_copies(*buckets)
    before = len(tracker.events)

    def on_phase(phase: str) -> None:
        if phase in PHASES:
            counter.phase = phase

    with attention_for(target), mode, tracker, known, counter:
        on_device = fb.to(CPU)  # as Trainer.to_device: the normalised batch the step holds until it ends
        train_step(model, on_device, optimizer, scaler, CPU, precision, scenario.grad_clip(cfg), on_phase=on_phase)
    reserved = replay(tracker.events[:before], tracker.events[before:])
    plan = scenario.epoch_extras_plan(cfg, method, data, assembly) if epoch_extras else None
    extras = estimate_extras(plan, model, optimizer, mode, known, target) if plan is not None else None
    return StepEstimate(
        memory=peak_breakdown(tracker),
        reserved_bytes=reserved.peak_reserved,
        cost=counter.cost,
        trainable_params=sum(p.numel() for p in trainable),
        total_params=sum(p.numel() for p in params),
        batch_shapes={name: list(t.shape) for name, t in named},
        wall_s=time.perf_counter() - t0,
        graphed=target == "cuda" and would_capture(cfg.train.cuda_graphs, cfg.train.compile, method, assembly.part),
        graph_eager_kernels=len(named),  # one host-to-device copy per batch tensor; .grad takes the graph's gradient buffers as they are
        gradient_bucket_bytes=sum(b.numel() * b.element_size() for b in buckets),
        extras=extras,
    )
