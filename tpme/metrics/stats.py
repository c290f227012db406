"""Statistics from the step times a cell already holds: seeded bootstrap intervals, outlier
steps, TPME and rank intervals over a table, the ratio of two medians.

Why a bootstrap: step times are skewed (a busy host adds a long right tail) and a cell has
few of them, so a normal-theory interval of the median would be wrong; resampling the
steps (and the repeats, when a label has several) makes no assumption about the shape.
Every draw is seeded from a fixed seed and the label it belongs to, so the same records give
the same intervals on every machine and in every order.
"""
from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import median_abs_deviation, rankdata

from tpme.metrics.tpme import Weights

LEVEL = 0.95
N_BOOT = 2000
SEED = 0
OUTLIER_Z = 3.5  # modified z-score beyond which a step is flagged (Iglewicz & Hoaglin)
MEAN_AD_SCALE = 1.253314  # mean absolute deviation -> sigma of a normal, used when the MAD is 0


@dataclass(frozen=True)
class Interval:
    """A two-sided percentile interval at `level`."""

    low: float
    high: float
    level: float = LEVEL

    def contains(self, x: float) -> bool:
        return self.low <= x <= self.high

    def scaled(self, factor: float) -> "Interval":
        return Interval(self.low * factor, self.high * factor, self.level)

    def as_list(self) -> list[float]:
        return [float(self.low), float(self.high)]


def rng_for(seed: int, *keys: str) -> np.random.Generator:
    """A generator seeded by `seed` and stable hashes of `keys` (never Python's salted hash)."""
    return np.random.default_rng([seed, *(zlib.crc32(k.encode()) for k in keys)])


def percentile_interval(draws: np.ndarray, level: float = LEVEL) -> Interval:
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(draws, [tail, 100 - tail])
    return Interval(float(lo), float(hi), level)


def bootstrap_medians(samples: Sequence[float], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """`n_boot` medians of resamples (with replacement) of `samples`."""
    x = np.asarray(samples, dtype=float)
    if x.size == 0:
        raise ValueError("no samples to bootstrap")
    return np.median(x[rng.integers(0, x.size, size=(n_boot, x.size))], axis=1)


def median_interval(samples: Sequence[float], level: float = LEVEL, n_boot: int = N_BOOT, seed: int = SEED, key: str = "") -> Interval:
    """Bootstrap percentile interval of the median of `samples`."""
    return percentile_interval(bootstrap_medians(samples, n_boot, rng_for(seed, key)), level)


def outlier_steps(samples: Sequence[float], z: float = OUTLIER_Z) -> list[int]:
    """Indices of samples whose modified z-score (distance from the median in robust standard
    deviations: MAD, or the mean absolute deviation when more than half the samples are equal)
    exceeds `z`. Flagged, never removed: the median and its interval already resist them."""
    x = np.asarray(samples, dtype=float)
    if x.size < 3:
        return []
    med = np.median(x)
    scale = median_abs_deviation(x, scale="normal")
    if scale == 0:
        scale = MEAN_AD_SCALE * float(np.mean(np.abs(x - med)))
    if scale == 0:
        return []
    return [int(i) for i in np.flatnonzero(np.abs(x - med) / scale > z)]


@dataclass(frozen=True)
class Repeat:
    """One repeat of a label: its epoch time and the step times it was derived from (may be empty)."""

    epoch_time_s: float
    step_times_s: Sequence[float] = ()
    fixed_s: float = 0.0  # the part of the epoch time timed once, not from the steps (the official epoch's validation, test, checkpoint)


def epoch_time_draws(repeats: Sequence[Repeat], n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Bootstrap draws of a label's epoch time (the median over its repeats), resampling the
    repeats and, within each, its steps: a repeat's epoch time moves with the median of its
    resampled steps (its step-derived part x resampled median / median, plus its `fixed_s`).
    A repeat without step times stays fixed; one without any spread gives a constant."""
    if not repeats:
        raise ValueError("no repeats to bootstrap")
    per_repeat = []
    for r in repeats:
        steps = np.asarray(r.step_times_s, dtype=float)
        med = float(np.median(steps)) if steps.size else 0.0
        if steps.size and med > 0:
            per_repeat.append((r.epoch_time_s - r.fixed_s) * bootstrap_medians(steps, n_boot, rng) / med + r.fixed_s)
        else:
            per_repeat.append(np.full(n_boot, float(r.epoch_time_s)))
    draws = np.stack(per_repeat, axis=1)  # (n_boot, repeats)
    if draws.shape[1] == 1:
        return draws[:, 0]
    chosen = rng.integers(0, draws.shape[1], size=draws.shape)
    return np.median(np.take_along_axis(draws, chosen, axis=1), axis=1)


def tpme_draws(times: np.ndarray, params: Sequence[float], memory: Sequence[float], weights: Weights) -> np.ndarray:
    """TPME of every entry in every draw: `times` is (draws, entries); parameters and memory
    are fixed per entry. The same min-max formula as `tpme.metrics.tpme.score`, row by row."""
    def norm(x: np.ndarray) -> np.ndarray:
        lo, hi = x.min(axis=-1, keepdims=True), x.max(axis=-1, keepdims=True)
        span = np.where(hi > lo, hi - lo, 1.0)
        return np.where(hi > lo, (x - lo) / span, 0.0)

    a1, a2, a3 = weights.as_tuple()
    fixed = a2 * norm(np.asarray(params, dtype=float)) + a3 * norm(np.asarray(memory, dtype=float))
    return a1 * norm(np.asarray(times, dtype=float)) + fixed


@dataclass(frozen=True)
class LabelSpread:
    """A label's intervals within one table."""

    epoch_time: Interval
    tpme: Interval
    rank: tuple[int, int]  # lowest and highest rank the central `level` of draws gives
    tied_with: tuple[str, ...]  # labels whose TPME difference interval contains 0


@dataclass(frozen=True)
class LabelData:
    label: str
    repeats: Sequence[Repeat]
    trainable_params: float
    peak_memory_bytes: float


def table_spread(labels: Sequence[LabelData], weights: Weights, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = SEED) -> dict[str, LabelSpread]:
    """Epoch-time, TPME and rank intervals of every label of a table, and which labels are ties."""
    if not labels:
        return {}
    times = np.stack([epoch_time_draws(d.repeats, n_boot, rng_for(seed, d.label)) for d in labels], axis=1)
    tp = tpme_draws(times, [d.trainable_params for d in labels], [d.peak_memory_bytes for d in labels], weights)
    ranks = rankdata(np.round(tp, 12), method="dense", axis=1)
    tail = 100 * (1 - level) / 2
    out = {}
    for i, d in enumerate(labels):
        lo, hi = np.percentile(ranks[:, i], [tail, 100 - tail])
        tied = tuple(o.label for j, o in enumerate(labels) if j != i and percentile_interval(tp[:, j] - tp[:, i], level).contains(0.0))
        out[d.label] = LabelSpread(percentile_interval(times[:, i], level), percentile_interval(tp[:, i], level), (int(np.floor(lo)), int(np.ceil(hi))), tied)
    return out


def ratio_interval(baseline: Sequence[Repeat], candidate: Sequence[Repeat], level: float = LEVEL, n_boot: int = N_BOOT, seed: int = SEED, key: str = "") -> Interval:
    """Bootstrap interval of candidate / baseline epoch time (each side its median over repeats),
    both sides resampled independently over their repeats and steps."""
    b = epoch_time_draws(baseline, n_boot, rng_for(seed, "baseline", key))
    c = epoch_time_draws(candidate, n_boot, rng_for(seed, "candidate", key))
    return percentile_interval(c / b, level)
