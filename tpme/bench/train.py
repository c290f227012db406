"""The training step and the timed loop: per-step wall time and its data / forward /
backward / optimizer split, with the device synchronised at step boundaries."""
from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch

from tpme.bench.device import autocast, synchronize
from tpme.bench.graphs import GraphedLoss
from tpme.datasets.batching import TrainBatch
from tpme.models.recommender import Recommender

PHASES = ("data", "forward", "backward", "optimizer")


@dataclass
class Trainer:
    model: Recommender
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    precision: str
    graphed_loss: GraphedLoss | None = None  # the captured forward + backward, when used

    def to_device(self, batch: TrainBatch) -> TrainBatch:
        """A host batch on the device: into the graph's input buffers when captured."""
        if self.graphed_loss is not None:
            return self.graphed_loss.load(batch)
        return batch.to(self.device, non_blocking=True)

    def loss(self, batch: TrainBatch) -> torch.Tensor:
        """The training loss of a batch on the device (replays the CUDA graphs when captured)."""
        if self.graphed_loss is not None:
            return self.graphed_loss(batch)
        with autocast(self.device, self.precision):
            return self.model(batch)

    def step(self, batch: TrainBatch) -> torch.Tensor:
        """One untimed training step (warm-up, memory tracking)."""
        loss = self.loss(self.to_device(batch))
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()


@dataclass
class StepTimes:
    total: list[float] = field(default_factory=list)
    phases: dict[str, list[float]] = field(default_factory=lambda: {p: [] for p in PHASES})
    losses: list[float] = field(default_factory=list)

    def summary(self) -> dict:
        def stats(xs: list[float]) -> dict:
            xs = sorted(xs)
            q = lambda f: xs[min(len(xs) - 1, int(round(f * (len(xs) - 1))))]  # noqa: E731
            return {"median": statistics.median(xs), "mean": statistics.fmean(xs), "min": xs[0], "max": xs[-1], "p10": q(0.1), "p90": q(0.9), "std": statistics.pstdev(xs)}

        return {
            "steps": len(self.total),
            "step_time_s": stats(self.total),
            "breakdown_median_s": {p: statistics.median(v) for p, v in self.phases.items() if v},
            "step_times_s": self.total,
        }


class _PhaseClock:
    """Phase boundaries: CUDA events on a GPU (no extra syncs), host clock on CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"

    def mark(self):
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    @staticmethod
    def between(a, b) -> float:
        return a.elapsed_time(b) / 1000.0 if isinstance(a, torch.cuda.Event) else b - a


def timed_steps(trainer: Trainer, batches: Iterator[TrainBatch], n: int, times: StepTimes, on_step=None) -> StepTimes:
    """Run n steps, timing each; the device is synchronised before and after every step."""
    clock = _PhaseClock(trainer.device)
    opt, scaler = trainer.optimizer, trainer.scaler
    synchronize(trainer.device)
    for _ in range(n):
        t0 = time.perf_counter()
        batch = trainer.to_device(next(batches))
        t_data = time.perf_counter() - t0
        m0 = clock.mark()
        loss = trainer.loss(batch)
        m1 = clock.mark()
        scaler.scale(loss).backward()
        m2 = clock.mark()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad(set_to_none=True)
        m3 = clock.mark()
        synchronize(trainer.device)
        times.total.append(time.perf_counter() - t0)
        times.phases["data"].append(t_data)
        times.phases["forward"].append(clock.between(m0, m1))
        times.phases["backward"].append(clock.between(m1, m2))
        times.phases["optimizer"].append(clock.between(m2, m3))
        times.losses.append(float(loss.detach()))
        if on_step is not None:
            on_step()
    return times
