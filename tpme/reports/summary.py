"""One summary row per label (repeats combined by median), the unit every table, plot and
report is drawn from, plus the per-method colours that keep figures consistent."""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from tpme.metrics.aggregate import score_records
from tpme.metrics.tpme import Weights

MEMORY_CATEGORIES = ("parameters", "gradients", "optimizer", "activations", "temporaries", "overhead")
CATEGORY_ALIASES = {
    "params": "parameters", "param": "parameters", "weights": "parameters",
    "grads": "gradients", "grad": "gradients",
    "optimizer_state": "optimizer", "optim": "optimizer", "optimizer_states": "optimizer",
    "activation": "activations", "acts": "activations",
    "temporary": "temporaries", "temp": "temporaries",
    "runtime_overhead": "overhead",
}
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
    params_share: float | None = None  # of the largest trainable_params in the table
    peak_memory_bytes: float | None = None
    memory_source: str | None = None
    memory_kind: str | None = None  # measured | estimated
    tpme: float | None = None
    rank: int | None = None
    t_norm: float | None = None
    p_norm: float | None = None
    m_norm: float | None = None
    hr10: float | None = None
    ndcg10: float | None = None
    cuda_graphs: bool = False  # every ok repeat's step was replayed from CUDA graphs
    step_times_s: list[float] = field(default_factory=list)
    breakdown_s: dict[str, float] = field(default_factory=dict)
    memory_breakdown: dict[str, float] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)  # {repeat, status, error}

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

    @property
    def scored(self) -> list[Row]:
        return [r for r in self.rows if r.tpme is not None]

    @property
    def has_effectiveness(self) -> bool:
        return any(r.hr10 is not None or r.ndcg10 is not None for r in self.rows)

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


def memory_breakdown(record: dict[str, Any]) -> dict[str, float]:
    """Peak memory by category from a record's `estimate` object, wherever it nests the numbers:
    the first dict with at least two known category keys (aliases accepted) and numeric values."""
    def search(node: Any, depth: int) -> dict[str, float]:
        if not isinstance(node, dict) or depth > 4:
            return {}
        found = {}
        for k, v in node.items():
            name = CATEGORY_ALIASES.get(str(k).lower().removesuffix("_bytes"), str(k).lower().removesuffix("_bytes"))
            if name in MEMORY_CATEGORIES and isinstance(v, (int, float)) and not isinstance(v, bool):
                found[name] = found.get(name, 0.0) + float(v)
        if len(found) >= 2:
            return found
        for v in node.values():
            sub = search(v, depth + 1)
            if sub:
                return sub
        return {}

    return search(record.get("estimate"), 0)


def _source(values: list[str | None]) -> str | None:
    kinds = {v for v in values if v}
    if not kinds:
        return None
    return kinds.pop() if len(kinds) == 1 else "mixed"


def _median_dicts(dicts: list[dict[str, float]]) -> dict[str, float]:
    keys = [k for d in dicts for k in d if isinstance(d.get(k), (int, float))]
    out = {}
    for k in dict.fromkeys(keys):
        vals = [d[k] for d in dicts if isinstance(d.get(k), (int, float))]
        out[k] = statistics.median(vals)
    return out


def _optional_median(values: list[Any]) -> float | None:
    vals = [v for v in values if isinstance(v, (int, float))]
    return statistics.median(vals) if vals else None


def summarise(records: list[dict[str, Any]], weights: Weights, group_by: str | None = None) -> Summary:
    """Rows in rank order (failed labels last, in input order)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[r.get("label") or r["method"]].append(r)
    scores = score_records(records, weights)
    rows = []
    for name, rs in groups.items():
        ok = [r for r in rs if r.get("status") == "ok"]
        row = Row(label=name, method=rs[0].get("method") or name, group_value=rs[0].get("group_value"), repeats=len(rs), ok=len(ok))
        row.failures = [{"repeat": r.get("repeat"), "status": r.get("status"), "error": r.get("error") or ""} for r in rs if r.get("status") != "ok"]
        if ok:
            t = [r["epoch_time_s"] for r in ok]
            p = [r["trainable_params"] for r in ok]
            m = [r["peak_memory_bytes"] for r in ok]
            row.epoch_time_s, row.trainable_params, row.peak_memory_bytes = statistics.median(t), statistics.median(p), statistics.median(m)
            row.epoch_time_source = _source([r.get("epoch_time_source") for r in ok])
            row.memory_source = _source([r.get("memory_source") for r in ok])
            row.memory_kind = _source([memory_kind(r.get("memory_source")) for r in ok])
            row.hr10 = _optional_median([r.get("hr@10") for r in ok])
            row.ndcg10 = _optional_median([r.get("ndcg@10") for r in ok])
            row.cuda_graphs = all(((r.get("execution") or {}).get("cuda_graphs") or {}).get("used") for r in ok)
            row.step_times_s = [float(x) for r in ok for x in ((r.get("timing") or {}).get("step_times_s") or [])]
            row.breakdown_s = _median_dicts([(r.get("timing") or {}).get("breakdown_median_s") or {} for r in ok])
            row.memory_breakdown = _median_dicts([memory_breakdown(r) for r in ok])
        s = scores.get(name)
        if s is not None:
            row.tpme, row.rank, row.t_norm, row.p_norm, row.m_norm = s.tpme, s.rank, s.t_norm, s.p_norm, s.m_norm
        rows.append(row)
    largest = max((r.trainable_params for r in rows if r.trainable_params is not None), default=None)
    for r in rows:
        if largest and r.trainable_params is not None:
            r.params_share = r.trainable_params / largest
    rows.sort(key=lambda r: (r.rank is None, r.rank or 0))
    return Summary(rows, weights, group_by)
