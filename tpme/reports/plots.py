"""Figures of a report (matplotlib `Figure` objects, no pyplot, so no global backend state).

Sized for a paper (7.2 in = a two-column width, 9 pt text), each method in the same colour
in every figure. Bars of extrapolated epoch times are hatched `//`, estimated ones `..`.
Each builder returns None when the records hold nothing to draw.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Polygon
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from tpme.metrics.sensitivity import Sensitivity, winner_regions
from tpme.metrics.tpme import WEIGHT_PRESETS
from tpme.reports.summary import Row, Summary
from tpme.reports.format import count_unit
from tpme.reports.labels import MAX_NAMED, PointSet, fit_legend, label_points
from tpme.reports.table import memory_unit

WIDTH = 7.2
RC = {
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
    "legend.fontsize": 8, "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "path",
    "svg.hashsalt": "tpme", "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.6,
}
HATCH = {"extrapolated": "//", "estimated": "..", "mixed": "xx"}
SOURCE_MARK = {"extrapolated": "*", "estimated": "~", "mixed": "+"}  # the tables' marks, printed after a bar's value
PHASE_COLOURS = {"data": "#bab0ac", "forward": "#4e79a7", "backward": "#f28e2b", "optimizer": "#59a14f"}
CATEGORY_COLOURS = {  # every category of results.MEMORY_CATEGORIES, in stacking order
    "parameters": "#4e79a7", "buffers": "#76b7b2", "gradients": "#f28e2b", "optimizer_state": "#59a14f",
    "activations": "#e15759", "temporaries": "#b07aa1", "batch": "#edc948",
}
TERNARY_TICKS = (0.2, 0.4, 0.6, 0.8)
TIE_HATCH = "////"  # a tie is hatched, never filled: no method's colour can be mistaken for it


@dataclass(frozen=True)
class FigureSpec:
    name: str
    title: str
    build: Callable[[Summary, Any], Figure | None]


def _bar_height(n: int) -> float:
    return 1.0 + 0.28 * max(n, 2)


def efficiency_bars(summary: Summary, _: Any = None) -> Figure | None:
    rows = summary.scored
    if not rows:
        return None
    colours = summary.colours()
    mu = memory_unit(rows)
    fig = Figure(figsize=(WIDTH, _bar_height(len(rows)) + 0.5), layout="constrained")
    axes = fig.subplots(1, 4, sharey=True)
    y = np.arange(len(rows))[::-1]
    pu = count_unit(r.trainable_params for r in rows)
    panels = [
        ("T: epoch time (s)", [r.epoch_time_s for r in rows], [r.epoch_time_source for r in rows]),
        (pu.header("P: trainable parameters"), [r.trainable_params / pu.size for r in rows], [None] * len(rows)),
        (f"M: peak memory ({mu.name})", [r.peak_memory_bytes / mu.size for r in rows], [r.memory_kind if r.memory_kind != "measured" else None for r in rows]),
        ("TPME (lower is better)", [r.tpme for r in rows], [None] * len(rows)),
    ]
    for ax, (title, values, sources) in zip(axes, panels):
        bars = ax.barh(y, values, color=[colours[r.label] for r in rows], edgecolor="black", linewidth=0.4)
        for b, src in zip(bars, sources):
            if src in HATCH:
                b.set_hatch(HATCH[src])
        ax.set_title(title)
        ax.grid(axis="y", visible=False)
        ax.set_xlim(0, max(max(values), 1e-12) * 1.4)  # linear: bar lengths compare as the figures do
        for yi, v, src in zip(y, values, sources):
            ax.text(v + max(values) * 0.02, yi, _short(v) + SOURCE_MARK.get(src or "", ""), va="center", fontsize=7, gid="value")
    axes[0].set_yticks(y, [r.label for r in rows])
    _error_bars(axes[0], y, [r.epoch_time_s for r in rows], [r.epoch_time_ci for r in rows], horizontal=True)
    _error_bars(axes[3], y, [r.tpme for r in rows], [r.tpme_ci for r in rows], horizontal=True)
    _hatch_legend(fig, {s for p in panels for s in p[2] if s in HATCH})
    return fig


def _error_bars(ax: Any, pos: Any, values: list[float], cis: list[tuple[float, float] | None], horizontal: bool = False, other: Any = None) -> None:
    """The rows' bootstrap intervals (Row.*_ci) as error bars around `values`; rows without one get none."""
    err = np.array([[max(v - ci[0], 0.0), max(ci[1] - v, 0.0)] if ci else [0.0, 0.0] for v, ci in zip(values, cis)]).T
    if not err.any():
        return
    if horizontal:
        ax.errorbar(values, pos, xerr=err, fmt="none", ecolor="black", elinewidth=0.8, capsize=2, zorder=3)
        ax.set_xlim(right=max(ax.get_xlim()[1], float(np.max(np.asarray(values) + err[1])) * 1.05))
    else:
        ax.errorbar(other, values, yerr=err, fmt="none", ecolor="black", elinewidth=0.8, capsize=2, zorder=3)


def _hatch_legend(fig: Figure, sources: set[str]) -> None:
    if sources:
        handles = [Patch(facecolor="white", edgecolor="black", hatch=HATCH[s], label=f"{s} ({SOURCE_MARK[s]} after the value)") for s in sorted(sources)]
        fit_legend(fig, handles, [h.get_label() for h in handles])


def _short(v: float) -> str:
    """Three significant digits, K/M suffixes for counts (4.00, 10.0, 0.362, 428K)."""
    if v >= 1e6:
        return f"{v / 1e6:.3g}M"
    if v >= 1e3:
        return f"{v / 1e3:.3g}K"
    return f"{v:#.3g}".rstrip(".")


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (both minimised), by x."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], points[i][1]))
    front, best_y = [], math.inf
    for i in order:
        if points[i][1] < best_y:
            front.append(i)
            best_y = points[i][1]
    return front


def time_memory(summary: Summary, _: Any = None) -> Figure | None:
    rows = summary.scored
    if not rows:
        return None
    colours = summary.colours()
    mu = memory_unit(rows)
    x = [r.peak_memory_bytes / mu.size for r in rows]
    y = [r.epoch_time_s for r in rows]
    pmax = max(r.trainable_params for r in rows) or 1
    sizes = [40 + 500 * r.trainable_params / pmax for r in rows]
    fig = Figure(figsize=(WIDTH * (1.0 if len(rows) > MAX_NAMED else 0.7), 3.8), layout="constrained")
    ax = fig.subplots()
    front = pareto_front(list(zip(x, y)))
    fx, fy = [x[i] for i in front], [y[i] for i in front]
    names = [rows[i].label for i in front]
    if len(rows) > MAX_NAMED:  # numbered points: the front by its key numbers
        on_front = ", ".join(str(i + 1) for i in sorted(front))
    else:
        on_front = ", ".join(names) if len(names) <= 4 and sum(map(len, names)) <= 48 else f"{len(names)} methods"
    ax.step(fx, fy, where="post", color="black", linewidth=1, linestyle="--", label=f"Pareto front (time, memory): {on_front}", zorder=1)
    for r, xi, yi, s in zip(rows, x, y, sizes):
        ax.scatter([xi], [yi], s=s, color=colours[r.label], edgecolor="black", linewidth=0.5, alpha=0.85, zorder=2, gid=r.label)
    _error_bars(ax, None, y, [r.epoch_time_ci for r in rows], other=x)
    _auto_log(ax, x, "x")
    _auto_log(ax, y, "y")
    ax.set_xlabel(f"peak memory ({mu.name})")
    ax.set_ylabel("epoch time (s)")
    ax.set_title("Epoch time vs peak memory")
    ax.legend(loc="lower right", frameon=False)
    ax.margins(0.15)
    label_points(fig, [PointSet(ax, list(zip(x, y)), [r.label for r in rows], list(range(1, len(rows) + 1)), [colours[r.label] for r in rows],
                                [math.sqrt(s) / 2 for s in sizes], notable(list(zip(x, y))))])
    return fig


def notable(points: list[tuple[float, float]], top: int = 3) -> set[int]:
    """The points worth naming in a crowded figure: the Pareto front (both coordinates
    minimised), the best and worst on each axis, and the first `top` (rows come by TPME rank)."""
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    extremes = {int(np.argmin(xs)), int(np.argmax(xs)), int(np.argmin(ys)), int(np.argmax(ys))} if points else set()
    return set(pareto_front(points)) | extremes | set(range(min(top, len(points))))


def _auto_log(ax: Any, values: list[float], axis: str) -> None:
    pos = [v for v in values if v > 0]
    if pos and len(pos) == len(values) and max(pos) / min(pos) > 30:
        (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
        target = ax.xaxis if axis == "x" else ax.yaxis
        target.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        target.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        target.set_minor_formatter(NullFormatter())


def effectiveness(summary: Summary, _: Any = None) -> Figure | None:
    """One panel per quality metric (at most four) against TPME."""
    metrics = summary.quality_metrics[:4]
    rows = [r for r in summary.scored if r.quality]
    if not rows or not metrics:
        return None
    colours = summary.colours()
    fig = Figure(figsize=(WIDTH, 3.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(metrics), sharex=True))
    for ax, q in zip(axes, metrics):
        pts = [(r.tpme, r.quality[q.name], r.label) for r in rows if q.name in r.quality]
        for x, v, lab in pts:
            ax.scatter([x], [v], s=60, color=colours[lab], edgecolor="black", linewidth=0.5, zorder=2, gid=lab)
        for b in summary.baselines:  # a reference every method should beat, never scored
            if q.name in b.quality:
                ax.axhline(b.quality[q.name].value, color="black", linestyle=":", linewidth=1, zorder=1, gid=f"baseline:{b.name}",
                           label=f"{b.name} baseline {b.quality[q.name].value:.4f}")
        ax.set_xlabel("TPME (lower is more efficient)")
        ax.set_ylabel(f"{q.title} ({'higher' if q.higher_is_better else 'lower'} is better)")
        ax.set_title(f"{q.title} vs TPME")
        ax.margins(0.2)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(loc="best", frameon=False, fontsize=7)
    rank = {r.label: k for k, r in enumerate(summary.scored, 1)}
    sets = []
    for ax, q in zip(axes, metrics):
        pts = [(r.tpme, r.quality[q.name], r.label) for r in rows if q.name in r.quality]
        sign = -1 if q.higher_is_better else 1
        sets.append(PointSet(ax, [(p[0], p[1]) for p in pts], [p[2] for p in pts], [rank[p[2]] for p in pts], [colours[p[2]] for p in pts],
                             [4.5] * len(pts), notable([(p[0], sign * p[1]) for p in pts])))
    label_points(fig, sets)
    return fig


def step_times(summary: Summary, _: Any = None) -> Figure | None:
    rows = [r for r in summary.scored if r.step_times_s]
    if not rows:
        return None
    colours = summary.colours()
    scale, unit = (1e3, "ms") if max(max(r.step_times_s) for r in rows) < 1 else (1.0, "s")
    fig = Figure(figsize=(WIDTH * 0.7, _bar_height(len(rows)) + 0.3), layout="constrained")
    ax = fig.subplots()
    data = [np.array(r.step_times_s) * scale for r in rows][::-1]
    box = ax.boxplot(data, orientation="horizontal", tick_labels=[r.label for r in rows][::-1], patch_artist=True, widths=0.55, showfliers=False)
    for patch, r in zip(box["boxes"], rows[::-1]):
        patch.set_facecolor(colours[r.label])
        patch.set_alpha(0.55)
    for med in box["medians"]:
        med.set_color("black")
    rng = np.random.default_rng(0)
    for i, d in enumerate(data, 1):
        ax.scatter(d, i + rng.uniform(-0.15, 0.15, len(d)), s=9, color="black", alpha=0.6, zorder=3)
    _auto_log(ax, [v for d in data for v in d], "x")
    ax.set_xlabel(f"step time ({unit}), timed steps after warm-up, all repeats")
    ax.set_title("Step-time distribution")
    ax.grid(axis="y", visible=False)
    return fig


def _stacked(rows: list[Row], parts: list[dict[str, float]], colours: dict[str, str], unit: tuple[float, str], title: str) -> Figure:
    fig = Figure(figsize=(WIDTH, _bar_height(len(rows)) + 0.6), layout="constrained")
    axes = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(rows))[::-1]
    keys = [k for k in colours if any(k in p for p in parts)] + sorted({k for p in parts for k in p} - set(colours))
    totals = [sum(p.values()) or 1 for p in parts]
    for ax, share in ((axes[0], False), (axes[1], True)):
        left = np.zeros(len(rows))
        for k in keys:
            vals = np.array([p.get(k, 0.0) for p in parts]) / unit[0]
            if share:
                vals = np.array([p.get(k, 0.0) / t * 100 for p, t in zip(parts, totals)])
            ax.barh(y, vals, left=left, color=colours.get(k, "#cccccc"), edgecolor="white", linewidth=0.5, label=k)
            left += vals
        ax.grid(axis="y", visible=False)
        ax.set_xlabel("share (%)" if share else unit[1])
        if share:
            ax.set_xlim(0, 100)
    axes[0].set_yticks(y, [r.label for r in rows])
    axes[0].set_title(title)
    axes[1].set_title("as a share of the total")
    handles, labels = axes[0].get_legend_handles_labels()
    fit_legend(fig, handles, labels)
    return fig


def step_breakdown(summary: Summary, _: Any = None) -> Figure | None:
    rows = [r for r in summary.scored if r.breakdown_s]
    if not rows:
        return None
    parts = [r.breakdown_s for r in rows]
    top = max(sum(p.values()) for p in parts)
    unit = (1e-3, "median time per step (ms)") if top < 1 else (1.0, "median time per step (s)")
    return _stacked(rows, parts, PHASE_COLOURS, unit, "Step time by phase")


def memory_breakdown(summary: Summary, _: Any = None) -> Figure | None:
    rows = [r for r in summary.scored if r.memory_breakdown]
    if not rows:
        return None
    mu = memory_unit(rows)
    return _stacked(rows, [r.memory_breakdown for r in rows], CATEGORY_COLOURS, (mu.size, f"estimated peak memory ({mu.name})"), "Memory by category (estimate)")


def group_trend(summary: Summary, _: Any = None) -> Figure | None:
    """TPME, T, P and M against the group-by field, one line per method; methods without the
    field are drawn as dashed horizontal references."""
    if not summary.group_by:
        return None
    rows = summary.scored
    grouped = [r for r in rows if r.group_value is not None]
    if not grouped:
        return None
    values = list(dict.fromkeys(r.group_value for r in grouped))
    numeric = all(_is_number(v) for v in values)
    if numeric:
        values.sort(key=float)
        pos = {v: float(v) for v in values}
    else:
        values.sort(key=str)
        pos = {v: float(i) for i, v in enumerate(values)}
    mu = memory_unit(rows)
    colours = summary.colours()
    fig = Figure(figsize=(WIDTH, 5.2), layout="constrained")
    axes = fig.subplots(2, 2, sharex=True).ravel()
    metrics = [
        ("TPME", lambda r: r.tpme, False), ("epoch time (s)", lambda r: r.epoch_time_s, False),
        ("trainable parameters", lambda r: r.trainable_params, True), (f"peak memory ({mu.name})", lambda r: r.peak_memory_bytes / mu.size, False),
    ]
    leaf = summary.group_by.rsplit(".", 1)[-1]
    methods = list(dict.fromkeys(r.method for r in grouped))
    for ax, (name, get, log) in zip(axes, metrics):
        for m in methods:
            pts = sorted(((pos[r.group_value], get(r)) for r in grouped if r.method == m), key=lambda p: p[0])
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", color=colours[next(r.label for r in grouped if r.method == m)], label=m)
        for r in rows:
            if r.group_value is None:
                ax.axhline(get(r), color=colours[r.label], linestyle="--", linewidth=1, label=f"{r.label} (no {leaf})")
        if log:
            _auto_log(ax, [get(r) for r in rows], "y")
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))
        ax.set_title(name)
    if numeric and all(float(v) > 0 for v in values) and max(float(v) for v in values) / min(float(v) for v in values) >= 8:
        for ax in axes:
            ax.set_xscale("log", base=2)
    for ax in axes[2:]:
        ax.set_xlabel(summary.group_by)
        ax.set_xticks([pos[v] for v in values], [str(v) for v in values])
        ax.xaxis.set_minor_locator(NullLocator())
    handles, labels = axes[0].get_legend_handles_labels()
    fit_legend(fig, handles, labels, loc="outside right center")
    return fig


def _is_number(v: Any) -> bool:
    if isinstance(v, bool):
        return False
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


SQ3 = math.sqrt(3) / 2


def _to_xy(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Barycentric (time, params, memory) to the plane: time bottom-left, memory bottom-right, params top."""
    return w[..., 2] + 0.5 * w[..., 1], SQ3 * w[..., 1]


def ternary(summary: Summary, sens: Sensitivity | None) -> Figure | None:
    """Which method has the lowest TPME over the weight simplex, as exact polygons (vector in
    SVG and PDF), the grid's shares in the legend, the chosen weights as a star and the named
    presets as dots. With an energy weight a4 the map spreads 1 - a4 over a1, a2, a3."""
    if sens is None or not sens.methods:
        return None
    colours = summary.colours()
    rows = summary.scored
    energy = summary.weights.energy
    terms = np.array([[r.t_norm, r.p_norm, r.m_norm] for r in rows])
    offset = np.array([energy * (r.e_norm or 0.0) for r in rows])
    labels = [r.label for r in rows]
    fig = Figure(figsize=(WIDTH * 0.75, 5.2), layout="constrained")
    ax = fig.subplots()
    tied = False
    for members, poly in winner_regions(terms, offset, energy):
        px, py = _to_xy(poly)
        names = [labels[k] for k in members]
        tie = len(members) > 1
        tied |= tie
        ax.add_patch(Polygon(np.column_stack([px, py]), closed=True, facecolor="white" if tie else colours[names[0]], edgecolor="black" if tie else "none",
                             hatch=TIE_HATCH if tie else None, linewidth=0.3, gid="region:" + " = ".join(names)))
    ax.add_patch(Polygon([(0, 0), (1, 0), (0.5, SQ3)], closed=True, fill=False, edgecolor="black", linewidth=1))
    for frac in (0.2, 0.4, 0.6, 0.8):
        for a, b in (((frac, 1 - frac, 0), (frac, 0, 1 - frac)), ((1 - frac, frac, 0), (0, frac, 1 - frac)), ((1 - frac, 0, frac), (0, 1 - frac, frac))):
            p, q = _to_xy(np.array([a, b]))
            ax.plot(p, q, color="white", linewidth=0.5, alpha=0.7)
    ax.text(-0.02, -0.04, "time\n(a1 = 1)", ha="center", va="top", fontsize=8)
    ax.text(1.02, -0.04, "memory\n(a3 = 1)", ha="center", va="top", fontsize=8)
    ax.text(0.5, SQ3 + 0.02, "parameters (a2 = 1)", ha="center", va="bottom", fontsize=8)
    for name, pw in WEIGHT_PRESETS.items():
        px, py = _to_xy(np.array(pw))
        ax.plot(px, py, "o", color="white", markeredgecolor="black", markersize=4)
        ax.annotate(name, (px, py), textcoords="offset points", xytext=(4, -9), fontsize=7)
    cx, cy = _to_xy(np.array(sens.chosen.as_tuple()) / (1 - energy))
    ax.plot(cx, cy, "*", color="yellow", markeredgecolor="black", markersize=13, zorder=5)
    handles = [Patch(color=colours[l], label=f"{l}: {100 * sens.shares.get(l, 0):.1f}%") for l in labels if sens.shares.get(l, 0) > 0 or l in sens.chosen_winners]
    if tied:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch=TIE_HATCH, label="tie (identical TPME everywhere)"))
    handles.append(ax.plot([], [], "*", color="yellow", markeredgecolor="black", markersize=11, linestyle="none", label="chosen weights")[0])
    for v in TERNARY_TICKS:  # each weight on one side, growing towards its corner
        bx, by = _to_xy(np.array([v, 0, 1 - v]))
        ax.text(bx, by - 0.02, f"{v:g}", ha="center", va="top", fontsize=7, gid="tick:a1")
        lx, ly = _to_xy(np.array([1 - v, v, 0]))
        ax.text(lx - 0.02, ly, f"{v:g}", ha="right", va="center", fontsize=7, gid="tick:a2")
        rx, ry = _to_xy(np.array([0, 1 - v, v]))
        ax.text(rx + 0.02, ry, f"{v:g}", ha="left", va="center", fontsize=7, gid="tick:a3")
    ax.text(0.5, -0.075, "a1 (time weight), growing to the left", ha="center", va="top", fontsize=7, color="#444")
    ax.text(0.13, 0.5, "a2 (parameter weight)", ha="center", va="center", rotation=60, fontsize=7, color="#444")
    ax.text(0.87, 0.5, "a3 (memory weight)", ha="center", va="center", rotation=-60, fontsize=7, color="#444")
    fit_legend(fig, handles, [h.get_label() for h in handles], title="lowest TPME (share of the grid where it wins)", title_fontsize=8)
    ax.set_xlim(-0.1, 1.1)
    ax.set_ylim(-0.12, SQ3 + 0.06)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("Lowest TPME over the weight simplex")
    return fig


FIGURES: tuple[FigureSpec, ...] = (
    FigureSpec("efficiency", "Epoch time, trainable parameters, peak memory and TPME per method", efficiency_bars),
    FigureSpec("time_memory", "Epoch time vs peak memory, Pareto front", time_memory),
    FigureSpec("effectiveness", "Effectiveness vs TPME", effectiveness),
    FigureSpec("step_times", "Step-time distribution", step_times),
    FigureSpec("step_breakdown", "Step time by phase", step_breakdown),
    FigureSpec("memory_breakdown", "Memory by category (estimate)", memory_breakdown),
    FigureSpec("group_trend", "TPME, T, P and M against the group-by field", group_trend),
    FigureSpec("sensitivity", "TPME winner over the weight simplex", ternary),
)
