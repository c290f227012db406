"""TPME (DESIGN section 5): min-max normalised epoch time, trainable parameters and peak
memory over the compared set, weighted; lower is better. An optional fourth weight a4 puts
energy per epoch (J, measured on NVIDIA GPUs) in as a fourth term; with three weights
(a4 = 0) TPME is the paper's."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from tpme.errors import TpmeError

WEIGHT_PRESETS: dict[str, tuple[float, float, float]] = {
    "paper": (0.45, 0.1, 0.45),  # IISAN paper: time and memory dominate
    "equal": (1 / 3, 1 / 3, 1 / 3),
    "time-bound": (0.8, 0.1, 0.1),  # deadline- or cost-per-hour-bound training
    "memory-bound": (0.1, 0.1, 0.8),  # a small GPU: fitting matters most
    "storage-bound": (0.1, 0.8, 0.1),  # many adapters to store or ship per task
}

WEIGHT_PRESET_USES: dict[str, str] = {
    "paper": "the IISAN paper's weights: training time and GPU memory dominate, parameters count a little",
    "equal": "no prior: the three costs count the same",
    "time-bound": "training time is the constraint: a deadline, or paying per GPU-hour",
    "memory-bound": "GPU memory is the constraint: a small GPU where fitting at all matters most",
    "storage-bound": "stored parameters are the constraint: one adapter per task or user to keep and ship",
}


@dataclass(frozen=True)
class Weights:
    time: float
    params: float
    memory: float
    energy: float = 0.0

    def __post_init__(self) -> None:
        values = self.terms()
        if any(not math.isfinite(v) or v < 0 for v in values):
            raise TpmeError(f"TPME weights must be non-negative numbers, got {values}", "e.g. --weights 0.45,0.1,0.45")
        if abs(sum(values) - 1.0) > 1e-6:
            raise TpmeError(f"TPME weights must sum to 1, got {sum(values):g} ({','.join(f'{v:g}' for v in values)})", "e.g. --weights 0.45,0.1,0.45 or a preset: " + ", ".join(WEIGHT_PRESETS))

    @classmethod
    def parse(cls, text: str) -> "Weights":
        """`a1,a2,a3`, `a1,a2,a3,a4` (a4 on energy per epoch) or a preset name."""
        if text in WEIGHT_PRESETS:
            return cls(*WEIGHT_PRESETS[text])
        parts = text.split(",")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) not in (3, 4):
            raise TpmeError(f"bad weights {text!r}", "give three numbers a1,a2,a3 (time, parameters, memory) or four a1,a2,a3,a4 (a4: energy) summing to 1, or a preset: " + ", ".join(WEIGHT_PRESETS))
        return cls(*values)

    def as_tuple(self) -> tuple[float, float, float]:
        """The time, parameter and memory weights (the weight simplex of the sensitivity map)."""
        return (self.time, self.params, self.memory)

    def given(self) -> tuple[float, ...]:
        """The weights as a user gives them: three, or four when energy counts."""
        return self.terms() if self.energy else self.as_tuple()

    def terms(self) -> tuple[float, float, float, float]:
        """All four weights: time, parameters, memory, energy."""
        return (self.time, self.params, self.memory, self.energy)

    def formula(self) -> str:
        """`0.45·t + 0.1·p + 0.45·m` (`+ a4·e` when energy counts)."""
        text = f"{self.time:g}·t + {self.params:g}·p + {self.memory:g}·m"
        return text + (f" + {self.energy:g}·e" if self.energy else "")

    def describe(self) -> str:
        """`TPME weights: time 0.45, parameters 0.1, memory 0.45` (and energy when it counts)."""
        text = f"TPME weights: time {self.time:g}, parameters {self.params:g}, memory {self.memory:g}"
        return text + (f", energy {self.energy:g}" if self.energy else "")


PAPER_WEIGHTS = Weights(*WEIGHT_PRESETS["paper"])


@dataclass(frozen=True)
class Entry:
    method: str
    epoch_time_s: float
    trainable_params: float
    peak_memory: float
    energy_j: float | None = None  # per epoch; needed only when the energy weight is above 0


@dataclass(frozen=True)
class Score:
    method: str
    tpme: float
    t_norm: float
    p_norm: float
    m_norm: float
    rank: int
    e_norm: float | None = None  # when every entry has an energy figure


def min_max(values: Sequence[float]) -> list[float]:
    """(x - min) / (max - min); all 0 when max == min (including a single value)."""
    lo, hi = min(values), max(values)
    if hi == lo:
        return [0.0] * len(values)
    return [(v - lo) / (hi - lo) for v in values]


def score(entries: Sequence[Entry], weights: Weights = PAPER_WEIGHTS) -> list[Score]:
    """TPME of each entry against the others; ranks start at 1 (ties share a rank)."""
    if not entries:
        return []
    for e in entries:
        for name, v in (("epoch time", e.epoch_time_s), ("trainable parameters", e.trainable_params), ("peak memory", e.peak_memory)):
            if v is None or not math.isfinite(v) or v < 0:
                raise TpmeError(f"{e.method}: {name} is {v!r}; TPME needs a non-negative number")
    missing = [e.method for e in entries if e.energy_j is None or not math.isfinite(e.energy_j) or e.energy_j < 0]
    if weights.energy and missing:
        raise TpmeError(f"the energy weight is {weights.energy:g}, and {', '.join(missing)} ha(s) no energy figure (measured on NVIDIA GPUs only)",
                        "give three weights a1,a2,a3, or score results measured on a GPU with NVML energy counters")
    t = min_max([e.epoch_time_s for e in entries])
    p = min_max([e.trainable_params for e in entries])
    m = min_max([e.peak_memory for e in entries])
    en: list[float | None] = min_max([e.energy_j for e in entries]) if not missing else [None] * len(entries)  # type: ignore[misc]
    a1, a2, a3, a4 = weights.terms()
    values = [a1 * ti + a2 * pi + a3 * mi + (a4 * ei if a4 else 0.0) for ti, pi, mi, ei in zip(t, p, m, en)]
    ordered = sorted(set(round(v, 12) for v in values))
    return [Score(e.method, v, ti, pi, mi, ordered.index(round(v, 12)) + 1, ei) for e, v, ti, pi, mi, ei in zip(entries, values, t, p, m, en)]
