"""The timed loop: per-step wall time and its data / forward / backward / optimizer split,
with the device synchronised at step boundaries. The step itself is `training.step`'s,
the same function the estimator runs."""
from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from tpme.device import synchronize
from tpme.training.step import END, Trainer

PHASES = ("data", "forward", "backward", "optimizer")


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


def timed_steps(trainer: Trainer, batches: Iterator[Any], n: int, times: StepTimes, on_step=None) -> StepTimes:
    """Run n steps, timing each; the device is synchronised before and after every step."""
    clock = _PhaseClock(trainer.device)
    marks: dict[str, Any] = {}

    def mark(phase: str) -> None:
        marks[phase] = clock.mark()

    synchronize(trainer.device)
    for _ in range(n):
        t0 = time.perf_counter()
        batch = trainer.to_device(next(batches))
        t_data = time.perf_counter() - t0
        loss = trainer.step_on_device(batch, mark)
        synchronize(trainer.device)
        times.total.append(time.perf_counter() - t0)
        times.phases["data"].append(t_data)
        times.phases["forward"].append(clock.between(marks["forward"], marks["backward"]))
        times.phases["backward"].append(clock.between(marks["backward"], marks["optimizer"]))
        times.phases["optimizer"].append(clock.between(marks["optimizer"], marks[END]))
        times.losses.append(float(loss.detach()))
        if on_step is not None:
            on_step()
    return times
