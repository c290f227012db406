"""Compare two result sets method by method: the ratio candidate / baseline of each metric
and a verdict (better, worse, within noise).

Epoch time is judged on distributions, not on two numbers: each side's step times (every
ok repeat's, resampled over repeats and steps, `tpme.metrics.stats`) give a seeded 95 %
bootstrap interval of the ratio of the two medians. "worse" needs the whole interval above
1 + threshold, "better" the whole interval below 1 - threshold; anything else is within
noise. A side without step times (published figures) enters as its fixed value, so two such
sides are compared exactly. TPME lies in [0, 1] and is 0 for the best method, so it is
judged on its difference, the same way: the interval of candidate - baseline over the same
draws must lie beyond the threshold, taken as an absolute TPME difference. Both sides are
scored on one scale: each term is min-max normalised over the methods the two sets have in
common, baseline and candidate values together, so a method's TPME moves only when its own
figures move. A time or TPME change beyond the band where either side measured on a busy host
(`provenance.host_state`) is "inconclusive: busy host", not a regression: the steps of one
cell share the host's load, so their spread cannot show a load that changed between runs.
Deterministic figures (trainable parameters, peak memory) and quality
metrics keep the exact rule: the change must exceed the threshold, widened to the relative
spread (max - min) / median of either side's repeats where a side has several.
Sets measured on different devices or configurations are not comparable: `mismatches`
names what differs and the caller refuses unless forced.
"""
from __future__ import annotations

import copy
import json
import statistics

import numpy as np
from dataclasses import dataclass, field
from typing import Any

from tpme.errors import TpmeError
from tpme.metrics.aggregate import entries_from_records
from tpme.metrics.stats import N_BOOT, SEED, Interval, Repeat, epoch_time_draws, percentile_interval, ratio_interval, rng_for, tpme_draws
from tpme.metrics.tpme import Entry, Weights, score
from tpme.results.record import Record

EFFICIENCY = (("epoch_time_s", True), ("trainable_params", True), ("peak_memory_bytes", True), ("tpme", True))  # name, lower is better
INCONCLUSIVE = "inconclusive: busy host"  # a time change beyond the band, measured on a busy host on either side
# Settings that change how long or how carefully a cell measures, not what it measures.
IRRELEVANT_CONFIG = ("preset", "train.device", "train.steps", "train.warmup_steps", "train.memory_steps")


def parse_threshold(text: str) -> float:
    """`5%` or `0.05`."""
    t = text.strip()
    try:
        value = float(t[:-1]) / 100 if t.endswith("%") else float(t)
    except ValueError:
        value = -1.0
    if not (0 <= value < 1) or (not t.endswith("%") and value >= 1):
        raise TpmeError(f"bad --threshold {text!r}", "give a relative change such as 5% or 0.05")
    return value


@dataclass
class Comparison:
    label: str
    metric: str
    baseline: float | None
    candidate: float | None
    ratio: float | None
    noise: float  # the band a change must exceed (relative; absolute for tpme)
    verdict: str  # better | worse | within noise | inconclusive: busy host | n/a
    interval: list[float] | None = None  # epoch time: bootstrap interval of the ratio; tpme: of the difference
    level: float | None = None  # of that interval


@dataclass
class CompareResult:
    threshold: float
    rows: list[Comparison]
    only_baseline: list[str]
    only_candidate: list[str]
    mismatches: list[str] = field(default_factory=list)
    forced: bool = False
    busy: dict[str, list[str]] = field(default_factory=dict)  # side -> labels with a cell measured on a busy host

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.rows if c.verdict == "worse"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold, "comparable": not self.mismatches, "mismatches": self.mismatches, "forced": self.forced,
            "only_baseline": self.only_baseline, "only_candidate": self.only_candidate, "regressions": len(self.regressions), "host_busy": self.busy,
            "rows": [c.__dict__ for c in self.rows],
        }


def _drop(config: dict[str, Any], path: str) -> None:
    node = config
    parts = path.split(".")
    for p in parts[:-1]:
        node = node.get(p) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(parts[-1], None)


def relevant_config(record: Record) -> str:
    cfg = copy.deepcopy(record.config)
    for path in IRRELEVANT_CONFIG:
        _drop(cfg, path)
    return json.dumps(cfg, sort_keys=True)


def device_name(record: Record) -> str | None:
    return record.provenance.device_name or record.device


def mismatches(baseline: list[Record], candidate: list[Record]) -> list[str]:
    out = []
    bp, cp = sorted({r.protocol for r in baseline}), sorted({r.protocol for r in candidate})
    if bp != cp:
        out.append(f"protocols differ: baseline {', '.join(bp)}; candidate {', '.join(cp)} (the official IISAN code's workload and settings are not tpme's)")
    bd, cd = sorted({str(device_name(r)) for r in baseline}), sorted({str(device_name(r)) for r in candidate})
    if bd != cd:
        out.append(f"devices differ: baseline {', '.join(bd)}; candidate {', '.join(cd)}")
    bc, cc = {relevant_config(r) for r in baseline}, {relevant_config(r) for r in candidate}
    if bc != cc:
        diff = _config_diff([json.loads(c) for c in bc], [json.loads(c) for c in cc])
        out.append("configs differ: " + (diff or "different sets of configurations"))
    return out


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _config_diff(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> str:
    fa, fb = [_flatten(c) for c in a], [_flatten(c) for c in b]
    keys = sorted({k for f in fa + fb for k in f})
    parts = []
    for k in keys:
        va, vb = sorted({json.dumps(f.get(k)) for f in fa}), sorted({json.dumps(f.get(k)) for f in fb})
        if va != vb:
            parts.append(f"{k} {'/'.join(va)} -> {'/'.join(vb)}")
    return "; ".join(parts)


def _values(records: list[Record], label: str, metric: str) -> list[float]:
    """A figure of a label's ok records: an efficiency field, or a quality metric by name."""
    ok = [r for r in records if r.label == label and r.ok]
    values = [r.quality_value(metric) if metric in r.quality.metrics else getattr(r, metric, None) for r in ok]
    return [v for v in values if isinstance(v, (int, float))]


def _metrics(baseline: list[Record], candidate: list[Record]) -> list[tuple[str, bool]]:
    """Efficiency figures first, then every quality metric either side carries, with its direction."""
    quality: dict[str, bool] = {}
    for r in baseline + candidate:
        for name, q in r.quality.metrics.items():
            quality.setdefault(name, not q.higher_is_better)
    return [*EFFICIENCY, *quality.items()]


def _spread(values: list[float]) -> float:
    if len(values) < 2:
        return 0.0
    med = statistics.median(values)
    return (max(values) - min(values)) / abs(med) if med else 0.0


def common_scale_tpme(baseline: list[Record], candidate: list[Record], labels: set[str], weights: Weights) -> tuple[dict[str, float], dict[str, float]]:
    """TPME of each side with every term normalised over both sides' values (see the module doc)."""
    b = [e for e in entries_from_records(baseline) if e.method in labels]
    c = [e for e in entries_from_records(candidate) if e.method in labels]
    if not b:
        return {}, {}
    both = score(b + [Entry(f"\0candidate:{e.method}", e.epoch_time_s, e.trainable_params, e.peak_memory) for e in c], weights)
    bt = {s.method: s.tpme for s in both[: len(b)]}
    ct = {s.method.removeprefix("\0candidate:"): s.tpme for s in both[len(b):]}
    return bt, ct


def _repeats(records: list[Record], label: str) -> list[Repeat]:
    return [Repeat(r.epoch_time_s, r.timing.step_times_s, r.timing.timed_once_s) for r in records if r.label == label and r.ok and r.epoch_time_s is not None]


def tpme_difference_intervals(baseline: list[Record], candidate: list[Record], labels: list[str], weights: Weights) -> dict[str, Interval]:
    """Per label, the bootstrap interval of candidate - baseline TPME on the common scale: every
    draw resamples both sides' epoch times and scores all of them together."""
    b_fig = {e.method: e for e in entries_from_records(baseline)}
    c_fig = {e.method: e for e in entries_from_records(candidate)}
    labels = [x for x in labels if x in b_fig and x in c_fig]
    if not labels:
        return {}
    times = [epoch_time_draws(_repeats(rs, x), N_BOOT, rng_for(SEED, side, x)) for side, rs in (("baseline", baseline), ("candidate", candidate)) for x in labels]
    figs = [b_fig[x] for x in labels] + [c_fig[x] for x in labels]
    tp = tpme_draws(np.stack(times, axis=1), [f.trainable_params for f in figs], [f.peak_memory for f in figs], weights)
    n = len(labels)
    return {x: percentile_interval(tp[:, n + i] - tp[:, i]) for i, x in enumerate(labels)}


def compare(baseline: list[Record], candidate: list[Record], threshold: float, weights: Weights) -> CompareResult:
    def labels(rs: list[Record]) -> list[str]:
        return list(dict.fromkeys(r.label for r in rs))

    bl, cl = labels(baseline), labels(candidate)
    common = [x for x in bl if x in cl]
    if not common:
        raise TpmeError("the two result sets have no method label in common", "compare runs of the same methods")
    ok_common = {x for x in common if _values(baseline, x, "epoch_time_s") and _values(candidate, x, "epoch_time_s")}
    bt, ct = common_scale_tpme(baseline, candidate, ok_common, weights)
    tpme_iv = tpme_difference_intervals(baseline, candidate, [x for x in common if x in ok_common], weights)
    busy = {side: list(dict.fromkeys(r.label for r in rs if r.label in common and r.provenance.host_busy)) for side, rs in (("baseline", baseline), ("candidate", candidate))}
    busy_labels = {x for labels_ in busy.values() for x in labels_}
    rows = []
    for lab in common:
        for metric, lower_better in _metrics(baseline, candidate):
            if metric == "tpme":
                b_vals = [bt[lab]] if lab in bt else []
                c_vals = [ct[lab]] if lab in ct else []
            else:
                b_vals, c_vals = _values(baseline, lab, metric), _values(candidate, lab, metric)
            if not b_vals and not c_vals:
                continue
            if b_vals and c_vals and metric == "tpme" and lab in tpme_iv:
                rows.append(_judge_interval(lab, metric, b_vals, c_vals, tpme_iv[lab], threshold, ratio_scale=False, busy=bool(busy_labels)))
            elif b_vals and c_vals and metric == "epoch_time_s" and statistics.median(b_vals) > 0:
                iv = ratio_interval(_repeats(baseline, lab), _repeats(candidate, lab), key=lab)
                rows.append(_judge_interval(lab, metric, b_vals, c_vals, iv, threshold, ratio_scale=True, busy=lab in busy_labels))
            else:
                rows.append(_judge(lab, metric, lower_better, b_vals, c_vals, threshold))
    return CompareResult(threshold, rows, [x for x in bl if x not in cl], [x for x in cl if x not in bl], busy={k: v for k, v in busy.items() if v})


def _judge_interval(lab: str, metric: str, b_vals: list[float], c_vals: list[float], iv: Interval, threshold: float, ratio_scale: bool, busy: bool) -> Comparison:
    """Lower is better. `iv` is an interval of candidate / baseline (ratio_scale) or of candidate - baseline;
    a verdict needs all of it beyond the threshold, and a host that was idle on both sides (`busy`:
    it was not): steps of one cell share the host's load, so their spread cannot show a load that
    changed between the runs, and the change is reported as inconclusive instead."""
    b, c = statistics.median(b_vals), statistics.median(c_vals)
    centre = 1.0 if ratio_scale else 0.0
    if iv.low > centre + threshold:
        verdict = "worse"
    elif iv.high < centre - threshold:
        verdict = "better"
    else:
        verdict = "within noise"
    if busy and verdict != "within noise":
        verdict = INCONCLUSIVE
    return Comparison(lab, metric, b, c, c / b if b else None, threshold, verdict, iv.as_list(), iv.level)


def _judge(lab: str, metric: str, lower_better: bool, b_vals: list[float], c_vals: list[float], threshold: float) -> Comparison:
    if not b_vals or not c_vals:
        return Comparison(lab, metric, statistics.median(b_vals) if b_vals else None, statistics.median(c_vals) if c_vals else None, None, threshold, "n/a")
    b, c = statistics.median(b_vals), statistics.median(c_vals)
    ratio = c / b if b else None
    if metric == "tpme":
        change, noise = c - b, threshold
    else:
        noise = max(threshold, _spread(b_vals), _spread(c_vals))
        change = (c - b) / abs(b) if b else (0.0 if c == b else float("inf"))
    if abs(change) <= noise:
        verdict = "within noise"
    else:
        verdict = "better" if (change < 0) == lower_better else "worse"
    return Comparison(lab, metric, b, c, ratio, noise, verdict)
