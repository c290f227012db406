"""One summary row per label (repeats combined by median), the unit every table, plot and
report is drawn from, plus the per-method colours that keep figures consistent."""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from tpme.metrics.aggregate import score_records
from tpme.metrics.stats import LEVEL, LabelData, LabelSpread, Repeat, table_spread
from tpme.metrics.tpme import Weights
from tpme.results.aggregate import by_label
from tpme.results.quality import QualityMetric, metric
from tpme.results.record import MEMORY_CATEGORIES, Baseline, Record

# Fixed colours for the methods of DESIGN section 3, so a method looks the same in every report.
KNOWN_COLOURS = {
    "fft": "#d62728", "frozen": "#7f7f7f", "adapter": "#ff7f0e", "lora": "#1f77b4", "lora-loralib": "#17becf",
    "bitfit": "#9467bd", "iisan": "#2ca02c", "iisan-cached": "#006400",
}
EXTRA_COLOURS = ("#8c564b", "#e377c2", "#bcbd22", "#aec7e8", "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5", "#393b79")


@dataclass
class Row:
    """A label's figures: medians over its ok repeats, with where each figure came from."""

    label: str
    method: str
    group_value: Any = None
    repeats: int = 0
    ok: int = 0
    epoch_time_s: float | None = None
    epoch_time_source: str | None = None  # measured | extrapolated | estimated | mixed
    trainable_params: float | None = None
    adapter_bytes: float | None = None  # trainable state as safetensors, where the records measured it
    energy_j: float | None = None  # per epoch, where every ok repeat measured it (NVML)
    e_norm: float | None = None
    params_share: float | None = None  # of the largest trainable_params in the table
    peak_memory_bytes: float | None = None
    memory_source: str | None = None
    memory_kind: str | None = None  # measured | estimated
    tpme: float | None = None
    rank: int | None = None
    t_norm: float | None = None
    p_norm: float | None = None
    m_norm: float | None = None
    quality: dict[str, float] = field(default_factory=dict)  # metric name -> median over ok repeats
    cuda_graphs: bool = False  # every ok repeat's step was replayed from CUDA graphs
    step_times_s: list[float] = field(default_factory=list)
    breakdown_s: dict[str, float] = field(default_factory=dict)
    memory_breakdown: dict[str, float] = field(default_factory=dict)  # MEMORY_CATEGORIES -> bytes, from the estimates
    failures: list[dict[str, Any]] = field(default_factory=list)  # {repeat, status, error}
    # Spread (tpme.metrics.stats, seeded bootstrap over steps and repeats, at Summary.level): any renderer reads these.
    epoch_time_ci: tuple[float, float] | None = None
    tpme_ci: tuple[float, float] | None = None
    rank_ci: tuple[int, int] | None = None
    tied_with: list[str] = field(default_factory=list)  # labels whose TPME this one's is not separable from
    outlier_steps: int = 0  # steps flagged as outliers over the ok repeats (kept in every figure)
    busy_repeats: int = 0  # ok repeats measured while the host was busy
    busy_reasons: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        if self.ok == self.repeats:
            return "ok"
        kinds = sorted({f["status"] for f in self.failures})
        return ("partial: " if self.ok else "") + ",".join(kinds)


@dataclass
class Summary:
    rows: list[Row]
    weights: Weights
    group_by: str | None = None
    quality_metrics: list[QualityMetric] = field(default_factory=list)  # in the order records name them
    baselines: list[Baseline] = field(default_factory=list)  # references (popularity), never scored
    level: float = LEVEL  # of the rows' intervals

    @property
    def scored(self) -> list[Row]:
        return [r for r in self.rows if r.tpme is not None]

    @property
    def has_effectiveness(self) -> bool:
        return any(r.quality for r in self.rows)

    def colours(self) -> dict[str, str]:
        """Colour per row label: by method when grouped (variants of a method share it)."""
        keys = [r.method if self.group_by else r.label for r in self.rows]
        return {r.label: c for r, c in zip(self.rows, colour_map(keys))}


def colour_map(keys: list[str]) -> list[str]:
    """Known methods keep their fixed colour; anything else (or a second variant) takes the next free one."""
    assigned: dict[str, str] = {}
    used: set[str] = set()
    for k in keys:
        if k in assigned:
            continue
        base = k.split("(")[0].split(" [")[0]
        c = KNOWN_COLOURS.get(k) or (KNOWN_COLOURS.get(base) if KNOWN_COLOURS.get(base) not in used else None)
        if c is None or c in used:
            free = [x for x in EXTRA_COLOURS + tuple(KNOWN_COLOURS.values()) if x not in used]
            c = free[0] if free else EXTRA_COLOURS[len(assigned) % len(EXTRA_COLOURS)]
        assigned[k] = c
        used.add(c)
    return [assigned[k] for k in keys]


def memory_kind(source: str | None) -> str | None:
    if source is None:
        return None
    return "estimated" if "estim" in source else "measured"


def memory_breakdown(record: Record) -> dict[str, float]:
    """Peak memory by category from the record's estimate, every category it names (buffers and
    the batch included: that is where a method's resident cache sits)."""
    if record.estimate is None:
        return {}
    return {k: float(record.estimate.breakdown[k]) for k in MEMORY_CATEGORIES if k in record.estimate.breakdown}


def _source(values: list[str | None]) -> str | None:
    kinds = {v for v in values if v}
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _median_dicts(dicts: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for d in dicts for k in d]
    return {k: statistics.median(d[k] for d in dicts if k in d) for k in dict.fromkeys(keys)}


def quality_metrics(records: list[Record]) -> list[QualityMetric]:
    """The quality metrics the records carry, each with the direction the records give it."""
    found: dict[str, QualityMetric] = {}
    for r in records:
        for name, q in r.quality.metrics.items():
            found.setdefault(name, QualityMetric(name, metric(name).title, q.higher_is_better))
    return list(found.values())


def baselines(records: list[Record]) -> list[Baseline]:
    """The distinct references the records were measured beside (one per name and figures)."""
    seen: dict[str, Baseline] = {}
    for r in records:
        for b in r.baselines.values():
            key = f"{b.name}:{sorted((k, v.value) for k, v in b.quality.items())}"
            seen.setdefault(key, b)
    return list(seen.values())


def summarise(records: list[Record], weights: Weights, group_by: str | None = None, group_values: dict[str, Any] | None = None) -> Summary:
    """Rows in rank order (failed labels last, in input order); `group_values`: label -> value of the group-by field."""
    scores = score_records(records, weights)
    rows = []
    for name, rs in by_label(records).items():
        ok = [r for r in rs if r.ok]
        row = Row(label=name, method=rs[0].method, group_value=(group_values or {}).get(name), repeats=len(rs), ok=len(ok))
        row.failures = [{"repeat": r.repeat, "status": r.status, "error": r.error or ""} for r in rs if not r.ok]
        if ok:
            row.epoch_time_s = statistics.median(r.epoch_time_s for r in ok)
            row.trainable_params = statistics.median(r.trainable_params for r in ok)
            sizes, energy = [r.adapter_bytes for r in ok], [r.energy_per_epoch_j for r in ok]
            row.adapter_bytes = statistics.median(sizes) if None not in sizes else None
            row.energy_j = statistics.median(energy) if None not in energy else None
            row.peak_memory_bytes = statistics.median(r.peak_memory_bytes for r in ok)
            row.epoch_time_source = _source([r.epoch_time_source for r in ok])
            row.memory_source = _source([r.memory_source for r in ok])
            row.memory_kind = _source([memory_kind(r.memory_source) for r in ok])
            row.quality = _median_dicts([{k: v.value for k, v in r.quality.metrics.items()} for r in ok])
            row.cuda_graphs = all((r.execution.get("cuda_graphs") or {}).get("used") for r in ok)
            row.step_times_s = [float(x) for r in ok for x in r.timing.step_times_s]
            row.breakdown_s = _median_dicts([r.timing.breakdown_median_s for r in ok])
            breakdowns = [b for b in (memory_breakdown(r) for r in ok) if b]
            row.memory_breakdown = _median_dicts(breakdowns) if breakdowns else {}
            row.outlier_steps = sum(len(r.timing.outlier_steps) for r in ok)
            busy = [r for r in ok if r.provenance.host_busy]
            row.busy_repeats, row.busy_reasons = len(busy), list(dict.fromkeys(x for r in busy for x in r.provenance.host_reasons))
        s = scores.get(name)
        if s is not None:
            row.tpme, row.rank, row.t_norm, row.p_norm, row.m_norm, row.e_norm = s.tpme, s.rank, s.t_norm, s.p_norm, s.m_norm, s.e_norm
        rows.append(row)
    _add_spread(rows, records, weights)
    largest = max((r.trainable_params for r in rows if r.trainable_params is not None), default=None)
    for r in rows:
        if largest and r.trainable_params is not None:
            r.params_share = r.trainable_params / largest
    rows.sort(key=lambda r: (r.rank is None, r.rank or 0))
    return Summary(rows, weights, group_by, quality_metrics(records), baselines(records))


def _add_spread(rows: list[Row], records: list[Record], weights: Weights) -> None:
    """Each scored row's epoch-time, TPME and rank intervals, and its ties (see tpme.metrics.stats)."""
    groups = by_label(records)
    data = [
        LabelData(r.label, [Repeat(x.epoch_time_s, x.timing.step_times_s, x.timing.timed_once_s) for x in groups[r.label] if x.ok], r.trainable_params, r.peak_memory_bytes)
        for r in rows if r.tpme is not None
    ]
    spread: dict[str, LabelSpread] = table_spread(data, weights)
    for r in rows:
        s = spread.get(r.label)
        if s is not None:
            r.epoch_time_ci, r.tpme_ci = (s.epoch_time.low, s.epoch_time.high), (s.tpme.low, s.tpme.high)
            r.rank_ci, r.tied_with = s.rank, list(s.tied_with)
