"""Results in a notebook: `tpme.load` gives a pandas DataFrame (one row per record, flat
columns, units in the names), `tpme.score` its TPME table, and the report's figures take a
DataFrame and return a matplotlib Figure.

A loaded frame remembers the records its rows came from (in `df.attrs`), so a filtered frame
(`df[df.method != "fft"]`) draws exactly its rows' records, step times and estimates
included. A frame built some other way is drawn from its flat columns alone.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tpme.errors import TpmeError
from tpme.metrics.tpme import Entry, Weights
from tpme.results.record import Quality, QualityValue, Record
from tpme.results.quality import KNOWN

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

RECORDS_ATTR = "tpme_records"
# Flat record fields -> DataFrame columns (units already in the names).
FIELDS = (
    "label", "method", "scenario", "status", "repeat", "seed", "epoch_time_s", "epoch_time_source", "step_time_s", "steps_per_epoch",
    "trainable_params", "total_params", "adapter_bytes", "peak_memory_bytes", "memory_source", "prepare_time_s", "device", "precision",
    "preset", "cell_key", "error",
)


def load(paths: str | Path | Iterable[str | Path]) -> "pd.DataFrame":
    """Records of a run directory, a results.jsonl or a sweep directory (or several: merged,
    duplicates once) as a DataFrame: one row per record, in file order."""
    import pandas as pd

    from tpme.results.load import load_inputs

    inputs = [paths] if isinstance(paths, (str, Path)) else list(paths)
    records = load_inputs(inputs)
    df = pd.DataFrame([row(r) for r in records])
    df.attrs[RECORDS_ATTR] = records
    return df


def row(r: Record) -> dict[str, Any]:
    """One record's flat columns: headline figures, energy, the device's name, quality metrics
    by name, baselines as `baseline_<name>_<metric>`, method options as `option_<key>` and
    sweep axes as `axis_<key>`."""
    out: dict[str, Any] = {k: getattr(r, k) for k in FIELDS}
    out["device_name"] = r.provenance.device_name
    out["timestamp"] = r.provenance.timestamp
    out["energy_j"] = r.energy_j
    out["energy_per_epoch_j"] = r.energy_per_epoch_j
    out.update({name: q.value for name, q in r.quality.metrics.items()})
    for b in r.baselines.values():
        out.update({f"baseline_{b.name}_{k}": q.value for k, q in b.quality.items()})
    out.update({f"option_{k}": v for k, v in r.method_options.items()})
    out.update({f"axis_{k}": v for k, v in r.axes.items() if k != "method"})
    return out


def _weights(weights: str | Weights | Iterable[float]) -> Weights:
    if isinstance(weights, Weights):
        return weights
    if isinstance(weights, str):
        return Weights.parse(weights)
    return Weights(*[float(w) for w in weights])


def records_of(df: "pd.DataFrame") -> list[Record]:
    """The records behind a frame's rows: the loaded ones where the frame remembers them,
    otherwise records rebuilt from the flat columns (headline figures and quality only)."""
    kept = df.attrs.get(RECORDS_ATTR)
    if kept is not None and all(isinstance(i, int) and 0 <= i < len(kept) for i in df.index):
        return [kept[i] for i in df.index]
    missing = [c for c in ("method", "epoch_time_s", "trainable_params", "peak_memory_bytes") if c not in df.columns]
    if missing:
        raise TpmeError(f"the DataFrame lacks the column(s) {', '.join(missing)}", "pass a frame from tpme.load(...) or one with those columns")
    out = []
    for i, (_, r) in enumerate(df.iterrows()):
        quality = {k: QualityValue(float(r[k]), m.higher_is_better) for k, m in KNOWN.items() if k in df.columns and _number(r[k])}
        out.append(Record(
            method=str(r["method"]), label=str(r.get("label") or r["method"]), status=str(r.get("status") or "ok"), repeat=i,
            epoch_time_s=float(r["epoch_time_s"]), epoch_time_source=r.get("epoch_time_source") if isinstance(r.get("epoch_time_source"), str) else None,
            trainable_params=int(r["trainable_params"]), peak_memory_bytes=int(r["peak_memory_bytes"]), quality=Quality(quality),
        ))
    return out


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def score(df: "pd.DataFrame", weights: str | Weights | Iterable[float] = "paper") -> "pd.DataFrame":
    """TPME per label (median over its ok rows), best first: the figures, the normalised
    terms t, p, m (and e with an energy weight), TPME and rank. `weights`: a preset name,
    `"a1,a2,a3[,a4]"`, a tuple of three or four numbers, or a `Weights`."""
    import pandas as pd

    from tpme.metrics.tpme import score as tpme_score

    w = _weights(weights)
    ok = df[df["status"] == "ok"] if "status" in df.columns else df
    if ok.empty:
        raise TpmeError("no row with status ok to score", "load a run whose cells finished")
    key = "label" if "label" in ok.columns else "method"
    energy_col = "energy_per_epoch_j" if "energy_per_epoch_j" in ok.columns else None
    medians = ok.groupby(key, sort=False).agg(
        epoch_time_s=("epoch_time_s", "median"), trainable_params=("trainable_params", "median"), peak_memory_bytes=("peak_memory_bytes", "median"),
        **({"energy_per_epoch_j": (energy_col, lambda s: s.median() if s.notna().all() else math.nan)} if energy_col else {}),
    )
    entries = [Entry(str(lab), float(m.epoch_time_s), float(m.trainable_params), float(m.peak_memory_bytes),
                     None if not energy_col or pd.isna(m.energy_per_epoch_j) else float(m.energy_per_epoch_j))
               for lab, m in medians.iterrows()]
    scores = {s.method: s for s in tpme_score(entries, w)}
    out = medians.reset_index().rename(columns={key: "label"})
    for col in ("t_norm", "p_norm", "m_norm", "e_norm", "tpme", "rank"):
        values = [getattr(scores[str(lab)], col) for lab in out["label"]]
        out[col] = [math.nan if v is None else v for v in values]
    return out.sort_values(["rank", "label"], kind="stable").reset_index(drop=True)


def figure(df: "pd.DataFrame", name: str, weights: str | Weights | Iterable[float] = "paper", group_by: str | None = None) -> "Figure":
    """One of the report's figures (efficiency, time_memory, effectiveness, step_times,
    step_breakdown, memory_breakdown, group_trend, sensitivity) drawn from the frame's rows."""
    from matplotlib import rc_context

    from tpme.metrics.aggregate import entries_from_records
    from tpme.metrics.sensitivity import sensitivity
    from tpme.reports.plots import FIGURES, RC
    from tpme.reports.summary import summarise
    from tpme.results.load import apply_group_by

    specs = {s.name: s for s in FIGURES}
    if name not in specs:
        raise TpmeError(f"no figure named {name!r}", f"choose from {', '.join(specs)}")
    w = _weights(weights)
    records, values = records_of(df), {}
    if group_by:
        records, values = apply_group_by(records, group_by)
    summary = summarise(records, w, group_by, values)
    entries = entries_from_records(records)
    sens = sensitivity(entries, w) if name == "sensitivity" and entries else None
    with rc_context(RC):
        fig = specs[name].build(summary, sens)
    if fig is None:
        raise TpmeError(f"the rows hold nothing the {name} figure draws", "e.g. effectiveness needs quality metrics, step_breakdown timed phases")
    return fig


def efficiency(df: "pd.DataFrame", weights: str | Weights | Iterable[float] = "paper") -> "Figure":
    """Epoch time, trainable parameters, peak memory and TPME per method, as bars."""
    return figure(df, "efficiency", weights)


def time_memory(df: "pd.DataFrame", weights: str | Weights | Iterable[float] = "paper") -> "Figure":
    """Epoch time against peak memory with the Pareto front."""
    return figure(df, "time_memory", weights)


def effectiveness(df: "pd.DataFrame", weights: str | Weights | Iterable[float] = "paper") -> "Figure":
    """Each quality metric against TPME, with the popularity baseline as a reference line."""
    return figure(df, "effectiveness", weights)


def sensitivity_map(df: "pd.DataFrame", weights: str | Weights | Iterable[float] = "paper") -> "Figure":
    """The method with the lowest TPME over the weight simplex."""
    return figure(df, "sensitivity", weights)
