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
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Polygon
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter, NullLocator

from tpme.metrics.sensitivity import TIE_TOL, Sensitivity
from tpme.metrics.tpme import WEIGHT_PRESETS
from tpme.reports.summary import Row, Summary
from tpme.reports.table import memory_unit

WIDTH = 7.2
RC = {
    "font.size": 9, "axes.titlesize": 9.5, "axes.labelsize": 9, "xtick.labelsize": 8, "ytick.labelsize": 8,
    "legend.fontsize": 8, "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "path",
    "svg.hashsalt": "tpme", "axes.grid": True, "grid.alpha": 0.25, "grid.linewidth": 0.6,
}
HATCH = {"extrapolated": "//", "estimated": "..", "mixed": "xx"}
PHASE_COLOURS = {"data": "#bab0ac", "forward": "#4e79a7", "backward": "#f28e2b", "optimizer": "#59a14f"}
CATEGORY_COLOURS = {  # every category of results.MEMORY_CATEGORIES, in stacking order
    "parameters": "#4e79a7", "buffers": "#76b7b2", "gradients": "#f28e2b", "optimizer_state": "#59a14f",
    "activations": "#e15759", "temporaries": "#b07aa1", "batch": "#edc948",
}
TIE_COLOUR = "#dddddd"


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
    panels = [
        ("T: epoch time (s)", [r.epoch_time_s for r in rows], False, [r.epoch_time_source for r in rows]),
        ("P: trainable parameters", [r.trainable_params for r in rows], True, [None] * len(rows)),
        (f"M: peak memory ({mu.name})", [r.peak_memory_bytes / mu.size for r in rows], False, [r.memory_kind if r.memory_kind != "measured" else None for r in rows]),
        ("TPME (lower is better)", [r.tpme for r in rows], False, [None] * len(rows)),
    ]
    for ax, (title, values, log, sources) in zip(axes, panels):
        bars = ax.barh(y, values, color=[colours[r.label] for r in rows], edgecolor="black", linewidth=0.4)
        for b, src in zip(bars, sources):
            if src in HATCH:
                b.set_hatch(HATCH[src])
        ax.set_title(title)
        ax.grid(axis="y", visible=False)
        if log:
            ax.set_xscale("log")
            lo = min(v for v in values if v > 0)
            ax.set_xlim(lo / 2, max(values) * 5)
            ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 3.0) if max(values) / lo < 300 else (1.0,)))
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: _short(v)))
            ax.xaxis.set_minor_formatter(NullFormatter())
        else:
            ax.set_xlim(0, max(max(values), 1e-12) * 1.35)
        for yi, v in zip(y, values):
            ax.text(v * (1.15 if log else 1) + (0 if log else max(values) * 0.02), yi, _short(v), va="center", fontsize=7)
    axes[0].set_yticks(y, [r.label for r in rows])
    _error_bars(axes[0], y, [r.epoch_time_s for r in rows], [r.epoch_time_ci for r in rows], horizontal=True)
    _error_bars(axes[3], y, [r.tpme for r in rows], [r.tpme_ci for r in rows], horizontal=True)
    _hatch_legend(fig, {s for p in panels for s in p[3] if s in HATCH})
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
        handles = [Patch(facecolor="white", edgecolor="black", hatch=HATCH[s], label=s) for s in sorted(sources)]
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)


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
    fig = Figure(figsize=(WIDTH * 0.7, 3.8), layout="constrained")
    ax = fig.subplots()
    front = pareto_front(list(zip(x, y)))
    fx, fy = [x[i] for i in front], [y[i] for i in front]
    names = [rows[i].label for i in front]
    on_front = ", ".join(names) if len(names) <= 4 else f"{len(names)} methods"
    ax.step(fx, fy, where="post", color="black", linewidth=1, linestyle="--", label=f"Pareto front (time, memory): {on_front}", zorder=1)
    for r, xi, yi, s in zip(rows, x, y, sizes):
        ax.scatter([xi], [yi], s=s, color=colours[r.label], edgecolor="black", linewidth=0.5, alpha=0.85, zorder=2)
    _error_bars(ax, None, y, [r.epoch_time_ci for r in rows], other=x)
    _auto_log(ax, x, "x")
    _auto_log(ax, y, "y")
    ax.set_xlabel(f"peak memory ({mu.name})")
    ax.set_ylabel("epoch time (s)")
    ax.set_title("Epoch time vs peak memory (marker area ∝ trainable parameters)")
    ax.legend(loc="lower right", frameon=False)
    ax.margins(0.15)
    place_labels(fig, ax, list(zip(x, y)), [r.label for r in rows], [math.sqrt(s) / 2 for s in sizes])
    return fig


def place_labels(fig: Figure, ax: Any, points: list[tuple[float, float]], labels: list[str], radii_pt: list[float]) -> None:
    """Annotate each point with the first of eight offsets whose text box overlaps no label
    placed before it and no other marker (greedy, after the layout has run); else the first."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.transforms import Bbox

    FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    px = fig.dpi / 72
    centres = [ax.transData.transform(p) for p in points]
    markers = [Bbox.from_bounds(c[0] - r * px, c[1] - r * px, 2 * r * px, 2 * r * px) for c, r in zip(centres, radii_pt)]
    frame = ax.get_window_extent(renderer)
    placed: list[Any] = []
    directions = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
    for i, (pt, text, r) in enumerate(zip(points, labels, radii_pt)):
        choice = None
        for dx, dy in directions:
            off = r * 0.8 + 2
            ann = ax.annotate(text, pt, textcoords="offset points", xytext=(dx * off, dy * off), fontsize=8,
                              ha="left" if dx > 0 else "right" if dx < 0 else "center", va="bottom" if dy > 0 else "top" if dy < 0 else "center")
            box = ann.get_window_extent(renderer)
            own = _box_distance(box, centres[i])
            clash = (
                box.x0 < frame.x0 or box.x1 > frame.x1 or box.y0 < frame.y0 or box.y1 > frame.y1
                or any(box.overlaps(b) for b in placed)
                or any(box.overlaps(m) for j, m in enumerate(markers) if j != i)
                or any(_box_distance(box, c) < own for j, c in enumerate(centres) if j != i)  # would read as another point's label
            )
            if not clash:
                choice = ann
                break
            ann.remove()
        if choice is None:
            choice = ax.annotate(text, pt, textcoords="offset points", xytext=(r * 0.8 + 2, r * 0.8 + 2), fontsize=8)
        placed.append(choice.get_window_extent(renderer))


def _box_distance(box: Any, point: Any) -> float:
    dx = max(box.x0 - point[0], 0, point[0] - box.x1)
    dy = max(box.y0 - point[1], 0, point[1] - box.y1)
    return math.hypot(dx, dy)


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
            ax.scatter([x], [v], s=60, color=colours[lab], edgecolor="black", linewidth=0.5, zorder=2)
        ax.set_xlabel("TPME (lower is more efficient)")
        ax.set_ylabel(f"{q.title} ({'higher' if q.higher_is_better else 'lower'} is better)")
        ax.set_title(f"{q.title} vs TPME")
        ax.margins(0.2)
    for ax, q in zip(axes, metrics):
        pts = [(r.tpme, r.quality[q.name], r.label) for r in rows if q.name in r.quality]
        place_labels(fig, ax, [(p[0], p[1]) for p in pts], [p[2] for p in pts], [4.5] * len(pts))
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
    fig.legend(handles, labels, loc="outside lower center", ncols=len(keys), frameon=False)
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
    fig.legend(handles, labels, loc="outside right center", frameon=False)
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
    """Which method has the lowest TPME for every weight triple (exact per pixel), the grid's
    shares in the legend, the chosen weights as a star and the named presets as dots."""
    if sens is None or not sens.methods:
        return None
    colours = summary.colours()
    terms = np.array([[r.t_norm, r.p_norm, r.m_norm] for r in summary.scored])
    labels = [r.label for r in summary.scored]
    res = 500
    xs, ys = np.meshgrid(np.linspace(0, 1, res), np.linspace(0, SQ3, int(res * SQ3)))
    a2 = ys / SQ3
    a3 = xs - 0.5 * a2
    a1 = 1 - a2 - a3
    inside = (a1 >= -1e-9) & (a3 >= -1e-9)
    w = np.stack([a1, a2, a3], axis=-1)
    t = w @ terms.T
    low = t.min(axis=-1, keepdims=True)
    tied = (t <= low + TIE_TOL).sum(axis=-1) > 1
    win = t.argmin(axis=-1)
    palette = [colours[l] for l in labels] + [TIE_COLOUR]
    img = np.where(tied, len(labels), win).astype(float)
    img[~inside] = np.nan
    fig = Figure(figsize=(WIDTH * 0.75, 5.2), layout="constrained")
    ax = fig.subplots()
    ax.imshow(img, origin="lower", extent=(0, 1, 0, SQ3), cmap=ListedColormap(palette), vmin=-0.5, vmax=len(palette) - 0.5, interpolation="nearest")
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
    cx, cy = _to_xy(np.array(sens.chosen.as_tuple()))
    ax.plot(cx, cy, "*", color="yellow", markeredgecolor="black", markersize=13, zorder=5)
    handles = [Patch(color=colours[l], label=f"{l}: {100 * sens.shares.get(l, 0):.1f}%") for l in labels if sens.shares.get(l, 0) > 0 or l in sens.chosen_winners]
    if bool(tied[inside].any()):
        handles.append(Patch(color=TIE_COLOUR, label="tie"))
    handles.append(ax.plot([], [], "*", color="yellow", markeredgecolor="black", markersize=11, linestyle="none", label="chosen weights")[0])
    for v in (0.2, 0.4, 0.6, 0.8):
        bx, by = _to_xy(np.array([1 - v, 0, v]))
        ax.text(bx, by - 0.02, f"{v:g}", ha="center", va="top", fontsize=7)
        lx, ly = _to_xy(np.array([1 - v, v, 0]))
        ax.text(lx - 0.02, ly, f"{v:g}", ha="right", va="center", fontsize=7)
    ax.text(0.5, -0.075, "a3 (memory weight) along the base", ha="center", va="top", fontsize=7, color="#444")
    ax.text(0.13, 0.5, "a2 (parameter weight)", ha="center", va="center", rotation=60, fontsize=7, color="#444")
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 3), frameon=False, title="lowest TPME (share of the grid where it wins)", title_fontsize=8)
    ax.set_xlim(-0.1, 1.1)
    ax.set_ylim(-0.12, SQ3 + 0.06)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title("Winner over the weight simplex (a1 time, a2 parameters, a3 memory)")
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
