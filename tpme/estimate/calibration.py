"""Fitting a GPU's `Calibration` to measured runs, reproducibly (`benchmarks/calibration.py --fit`).

What is fitted, and to what:
- time: `compute_efficiency`, `memory_efficiency` and `kernel_overhead_s` of the roofline in
  `predict.step_time_s`, to measured step times. Each run contributes its ops (FLOPs, bytes,
  compute dtype) as `OpArrays`, so evaluating a candidate is a few vector operations and the fit
  never reruns the (slow) fake step.
- memory: `reserved_overhead`, the fraction by which measured `max_memory_reserved()` differs
  from the replayed allocator's prediction alike in every run (a fraction, so that it stays
  proportionate on a model a hundred times smaller).
Both minimise a robust loss of log errors, `scipy.optimize.least_squares(loss="cauchy",
f_scale=ROBUST_SCALE)`: quadratic for errors up to about 10 % (the goal's tolerance), linear
beyond, so a run whose cost comes from something the estimate cannot see shows up as an
outlier instead of pulling every other run's constants towards it. Starting points and bounds
are fixed, so the same runs give the same constants. `leave_one_out` refits without each run
in turn and predicts it: the out-of-sample error.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tpme.estimate.cost import StepCost
from tpme.estimate.gpus import Calibration, Gpu

LOSS = "cauchy"
ROBUST_SCALE = 0.1  # log-error scale where the loss stops growing quadratically
TIME_FIELDS = ("compute_efficiency", "memory_efficiency", "kernel_overhead_s")
TIME_START = (0.5, 0.7, 1e-5)
TIME_BOUNDS = ((0.01, 0.01, 0.0), (1.0, 1.0, 1e-3))
DTYPES = ("fp32", "tf32", "fp16", "bf16")


@dataclass(frozen=True)
class OpArrays:
    """One step's ops as columns (eager step: the runs fitted here use no CUDA graphs)."""

    flops: np.ndarray
    bytes: np.ndarray
    dtype: np.ndarray  # index into DTYPES

    @classmethod
    def from_cost(cls, cost: StepCost) -> OpArrays:
        return cls(np.array([o.flops for o in cost.ops], dtype=float), np.array([o.bytes for o in cost.ops], dtype=float),
                   np.array([DTYPES.index(o.compute_dtype) for o in cost.ops], dtype=np.int8))

    def to_dict(self) -> dict[str, list]:
        return {"flops": self.flops.tolist(), "bytes": self.bytes.tolist(), "dtype": self.dtype.tolist()}

    @classmethod
    def from_dict(cls, d: dict[str, list]) -> OpArrays:
        return cls(np.asarray(d["flops"], dtype=float), np.asarray(d["bytes"], dtype=float), np.asarray(d["dtype"], dtype=np.int8))

    def step_time_s(self, gpu: Gpu, compute_efficiency: float, memory_efficiency: float, kernel_overhead_s: float) -> float:
        """`predict.step_time_s` of an eager step, vectorised."""
        peak = np.array([gpu.peak_flops[d] for d in DTYPES])[self.dtype]
        compute = self.flops / (peak * compute_efficiency)
        memory = self.bytes / (gpu.bandwidth_bytes_s * memory_efficiency)
        return float(np.maximum(compute, memory).sum() + len(self.flops) * kernel_overhead_s)


@dataclass(frozen=True)
class TimeSample:
    ops: OpArrays  # one step at the run's typical length
    steps: int
    measured_s: float


@dataclass(frozen=True)
class MemorySample:
    predicted_bytes: int  # reserved memory predicted with reserved_overhead = 0
    measured_bytes: int


@dataclass(frozen=True)
class Fit:
    """Fitted constants, the residual log errors at them, and how the fit ended."""

    values: dict[str, float]
    log_errors: list[float]
    converged: bool
    message: str


def _least_squares(residuals: Callable[[np.ndarray], np.ndarray], x0: Sequence[float], bounds: tuple, x_scale: Sequence[float]) -> Any:
    from scipy.optimize import least_squares

    return least_squares(residuals, np.asarray(x0, dtype=float), bounds=bounds, x_scale=np.asarray(x_scale, dtype=float), loss=LOSS, f_scale=ROBUST_SCALE, method="trf")


def predicted_times(samples: Sequence[TimeSample], gpu: Gpu, values: Sequence[float]) -> np.ndarray:
    return np.array([s.ops.step_time_s(gpu, *values) * s.steps for s in samples])


def fit_time(samples: Sequence[TimeSample], gpu: Gpu) -> Fit:
    """The roofline constants that best predict the measured times (robust least squares on log errors)."""
    if len(samples) < len(TIME_FIELDS):
        raise ValueError(f"fitting {len(TIME_FIELDS)} time constants needs at least as many runs, got {len(samples)}")
    measured = np.array([s.measured_s for s in samples])
    res = _least_squares(lambda x: np.log(predicted_times(samples, gpu, x) / measured), TIME_START, TIME_BOUNDS, x_scale=TIME_START)
    values = dict(zip(TIME_FIELDS, map(float, res.x)))
    return Fit(values, np.log(predicted_times(samples, gpu, res.x) / measured).tolist(), bool(res.success), str(res.message))


def fit_memory(samples: Sequence[MemorySample]) -> Fit:
    """The reserved-memory overhead fraction that best predicts the measured peaks (robust least squares on log errors)."""
    if not samples:
        raise ValueError("fitting the reserved overhead needs at least one run")
    predicted = np.array([s.predicted_bytes for s in samples], dtype=float)
    measured = np.array([s.measured_bytes for s in samples], dtype=float)
    res = _least_squares(lambda x: np.log1p(x[0]) + np.log(predicted / measured), [0.0], ([-0.5], [1.0]), x_scale=[0.01])
    overhead = float(res.x[0])
    return Fit({"reserved_overhead": overhead}, (np.log1p(overhead) + np.log(predicted / measured)).tolist(), bool(res.success), str(res.message))


def leave_one_out(n: int, fit_predict: Callable[[list[int], int], float]) -> list[float]:
    """For each run i: `fit_predict(others, i)` fits on the others and returns i's log error."""
    return [fit_predict([j for j in range(n) if j != i], i) for i in range(n)]


def time_loo(samples: Sequence[TimeSample], gpu: Gpu) -> list[float]:
    def one(train: list[int], i: int) -> float:
        fit = fit_time([samples[j] for j in train], gpu)
        return float(np.log(predicted_times([samples[i]], gpu, list(fit.values.values()))[0] / samples[i].measured_s))

    return leave_one_out(len(samples), one)


def memory_loo(samples: Sequence[MemorySample]) -> list[float]:
    def one(train: list[int], i: int) -> float:
        overhead = fit_memory([samples[j] for j in train]).values["reserved_overhead"]
        return float(np.log1p(overhead) + np.log(samples[i].predicted_bytes / samples[i].measured_bytes))

    return leave_one_out(len(samples), one)


def calibration_with(base: Calibration, values: dict[str, float]) -> Calibration:
    """`base` with fitted values (integers where the field is one)."""
    from dataclasses import replace

    return replace(base, **{k: type(getattr(base, k))(round(v) if isinstance(getattr(base, k), int) else v) for k, v in values.items()})
