"""Point labels and legends that stay readable and inside their figure.

A handful of points: each is named beside its own marker. Many points (more than
MAX_NAMED), or any name that cannot be placed without overlap: every point carries its
number (its TPME rank, the same in every figure) and a key below the axes maps numbers to
names; the points that matter (given by the caller: Pareto front, extremes, best TPME) are
named as well where room allows. Legends and keys take as many columns as fit the
figure's width, and the figure grows to hold them, so nothing is clipped.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

MAX_NAMED = 12  # beyond this many points a figure numbers its points and prints a key
NAME_SIZE = 8.0
NUMBER_SIZE = 7.0
KEY_SIZE = 7.0
NEAR_GAPS_PT = (2.0, 7.0, 14.0)  # beyond the marker's edge, nearest first; no leader line needed
NEAR_DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1))
FAR_GAPS_PT = tuple(float(g) for g in range(22, 260, 8))  # farther out, joined to the marker by a leader line
FAR_ANGLES = tuple(2 * math.pi * k / 24 for k in range(24))
PAD_PT = 1.5  # kept free around every label
MARGIN_PT = 4.0  # kept free at the figure's edges by fitted legends


@dataclass
class PointSet:
    """The points of one axes: where, their names, numbers (key entries) and marker radii,
    and which indices matter enough to be named even when the figure is crowded."""

    ax: Any
    points: list[tuple[float, float]]
    names: list[str]
    numbers: list[int]
    colours: list[str]
    radii_pt: list[float]
    important: set[int] = field(default_factory=set)


@dataclass(frozen=True)
class Spot:
    box: tuple[float, float, float, float]  # display pixels x0, y0, x1, y1
    offset_pt: tuple[float, float]
    ha: str
    va: str
    leader: bool


def renderer_of(fig: Figure) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
    return fig.canvas.get_renderer()


def fit_legend(fig: Figure, handles: list[Any], labels: list[str], loc: str = "outside lower center", planned_rows: int = 1, **kw: Any) -> Any:
    """A figure legend in as many columns as fit the figure's width (one for a legend at the
    side). A figure's size allows for `planned_rows` rows of legend: it grows by any further rows,
    and wider where one column does not fit (at the side: where the axes would keep less than half)."""
    renderer = renderer_of(fig)
    margin = 2 * MARGIN_PT * fig.dpi / 72
    side = "left" in loc or "right" in loc

    def make(ncols: int) -> tuple[Any, Any]:
        legend = fig.legend(handles, labels, loc=loc, ncols=ncols, frameon=False, **kw)
        return legend, legend.get_window_extent(renderer)

    lo, hi = 1, 1 if side else max(len(handles), 1)
    while lo < hi:  # the most columns whose legend fits the width
        mid = (lo + hi + 1) // 2
        legend, box = make(mid)
        legend.remove()
        if box.width <= fig.bbox.width - margin:
            lo = mid
        else:
            hi = mid - 1
    legend, box = make(lo)
    if side:
        fig.set_figwidth(max(fig.get_figwidth(), (box.width + margin) * 2 / fig.dpi))  # the axes keep half the width at least
    else:
        fig.set_figwidth(max(fig.get_figwidth(), (box.width + margin) / fig.dpi))
        rows = math.ceil(len(handles) / lo) + (1 if kw.get("title") else 0)
        fig.set_figheight(fig.get_figheight() + box.height * max(rows - planned_rows, 0) / rows / fig.dpi)
    return legend


def label_points(fig: Figure, sets: list[PointSet]) -> bool:
    """Name every point beside its marker, or number them all and add a key where there are
    more than MAX_NAMED points or a name cannot be placed cleanly. Freezes the layout, so that
    saving cannot move markers away from their labels. True where the points were numbered."""
    if max((len(s.points) for s in sets), default=0) <= MAX_NAMED:
        _freeze(fig)
        placed = [_Placer(fig, s) for s in sets]
        if all(p.place(i, s.names[i], NAME_SIZE, gid="name") for p, s in zip(placed, sets) for i in range(len(s.points))):
            return False
        for p in placed:
            p.undo()
        fig.set_layout_engine("constrained")
    _key(fig, sets)
    _freeze(fig)
    for s in sets:
        placer = _Placer(fig, s)
        for i in sorted(s.important):
            if not placer.place(i, f"{s.numbers[i]} {s.names[i]}", NAME_SIZE, gid="name", strict=True):
                placer.place(i, str(s.numbers[i]), NUMBER_SIZE, gid="number")
        for i in range(len(s.points)):
            if i not in s.important:
                placer.place(i, str(s.numbers[i]), NUMBER_SIZE, gid="number")
    return True


def _key(fig: Figure, sets: list[PointSet]) -> None:
    entries = {n: (name, c) for s in sets for n, name, c in zip(s.numbers, s.names, s.colours)}
    handles = [Line2D([], [], marker="o", linestyle="none", markersize=5, markerfacecolor=entries[n][1], markeredgecolor="black", markeredgewidth=0.4)
               for n in sorted(entries)]
    fit_legend(fig, handles, [f"{n}  {entries[n][0]}" for n in sorted(entries)], fontsize=KEY_SIZE, handletextpad=0.3,
               columnspacing=1.0, labelspacing=0.25, title="key: number = TPME rank", title_fontsize=KEY_SIZE, planned_rows=0)


def _freeze(fig: Figure) -> None:
    renderer_of(fig)
    fig.draw_without_rendering()
    fig.set_layout_engine("none")


class _Placer:
    """Greedy placement on one axes: each label takes the first candidate spot (near ones
    first, then farther out with a leader line) that stays inside the axes, overlaps no
    marker, no legend and no label placed before (near spots must also be nearer to their own
    marker than to any other), and crosses no leader line; failing that, the spot with the
    fewest overlaps, then crossings."""

    def __init__(self, fig: Figure, s: PointSet) -> None:
        self.fig, self.s, self.ax = fig, s, s.ax
        self.renderer = renderer_of(fig)
        self.px = fig.dpi / 72
        self.centres = np.array([self.ax.transData.transform(p) for p in s.points]).reshape(-1, 2)
        self.radii = np.array(s.radii_pt) * self.px
        self.markers = np.column_stack([self.centres - self.radii[:, None], self.centres + self.radii[:, None]]) if len(s.points) else np.zeros((0, 4))
        frame = self.ax.get_window_extent(self.renderer)
        self.frame = (frame.x0, frame.y0, frame.x1, frame.y1)
        legend = self.ax.get_legend()
        self.taken = [tuple(legend.get_window_extent(self.renderer).extents)] if legend else []
        self.artists: list[Any] = []
        self.leaders: list[tuple[float, float, float, float]] = []

    def place(self, i: int, text: str, size: float, gid: str, strict: bool = False) -> bool:
        """Place `text` for point i at its best spot: inside the axes, overlapping nothing, then
        crossing the fewest labels and leader lines, then markers. False where it must overlap
        something; with `strict` (where crossing a label or leader line counts as overlap)
        nothing is then drawn."""
        w, h = self._size(text, size)
        best: tuple[tuple[int, int, int, int], Spot] | None = None
        for spot in self._spots(i, w, h):
            cost = self._bad(i, spot)
            if best is None or cost < best[0]:
                best = (cost, spot)
                if cost == (0, 0, 0, 0):
                    break
        if best is None:
            return False
        clean = best[0][:3] == (0, 0, 0) if strict else best[0][:2] == (0, 0)
        if strict and not clean:
            return False
        spot = best[1]
        arrow = {"arrowstyle": "-", "color": "#555", "linewidth": 0.5, "shrinkA": 0, "shrinkB": self.s.radii_pt[i]} if spot.leader else None
        self.artists.append(self.ax.annotate(text, self.s.points[i], textcoords="offset points", xytext=spot.offset_pt, fontsize=size,
                                             ha=spot.ha, va=spot.va, gid=gid, arrowprops=arrow, annotation_clip=False))
        self.taken.append(spot.box)
        if spot.leader:
            self.leaders.append(self._leader(i, spot))
        return clean

    def undo(self) -> None:
        for a in self.artists:
            a.remove()
        self.artists.clear()

    def _size(self, text: str, size: float) -> tuple[float, float]:
        probe = self.ax.text(0, 0, text, fontsize=size)
        box = probe.get_window_extent(self.renderer)
        probe.remove()
        return box.width, box.height

    def _spots(self, i: int, w: float, h: float) -> Any:
        r = self.s.radii_pt[i]
        for gap in NEAR_GAPS_PT:
            for dx, dy in NEAR_DIRECTIONS:
                yield self._spot(i, (dx * (r + gap), dy * (r + gap)), dx, dy, w, h, leader=False)
        for gap in FAR_GAPS_PT:
            for a in FAR_ANGLES:
                c, s = math.cos(a), math.sin(a)
                dx = 0 if abs(c) < 0.3 else int(math.copysign(1, c))
                dy = 0 if abs(s) < 0.3 else int(math.copysign(1, s))
                yield self._spot(i, (c * (r + gap), s * (r + gap)), dx, dy, w, h, leader=True)

    def _spot(self, i: int, off: tuple[float, float], dx: int, dy: int, w: float, h: float, leader: bool) -> Spot:
        x = self.centres[i][0] + off[0] * self.px
        y = self.centres[i][1] + off[1] * self.px
        x0 = x - (0 if dx > 0 else w if dx < 0 else w / 2)
        y0 = y - (0 if dy > 0 else h if dy < 0 else h / 2)
        return Spot((x0, y0, x0 + w, y0 + h), off, "left" if dx > 0 else "right" if dx < 0 else "center",
                    "bottom" if dy > 0 else "top" if dy < 0 else "center", leader)

    def _bad(self, i: int, spot: Spot) -> tuple[int, int, int, int]:
        """(outside the axes, overlaps with labels, legends and other markers [and, near, a stranger
        marker nearer than its own], crossings of leader lines with labels and each other, leader
        lines through other markers)."""
        pad = PAD_PT * self.px  # a label touching another reads as one ("5" + "1 beft" as "51 beft")
        x0, y0, x1, y1 = spot.box[0] - pad, spot.box[1] - pad, spot.box[2] + pad, spot.box[3] + pad
        fx0, fy0, fx1, fy1 = self.frame
        outside = int(x0 < fx0 or x1 > fx1 or y0 < fy0 or y1 > fy1)
        overlaps = 0
        if self.taken:
            t = np.array(self.taken)
            overlaps += int(np.sum((x0 < t[:, 2]) & (x1 > t[:, 0]) & (y0 < t[:, 3]) & (y1 > t[:, 1])))
        m = self.markers
        hit = (x0 < m[:, 2]) & (x1 > m[:, 0]) & (y0 < m[:, 3]) & (y1 > m[:, 1])
        if not spot.leader:
            hit[i] = False
            gaps = np.hypot(np.maximum.reduce([x0 - self.centres[:, 0], np.zeros(len(m)), self.centres[:, 0] - x1]),
                            np.maximum.reduce([y0 - self.centres[:, 1], np.zeros(len(m)), self.centres[:, 1] - y1])) - self.radii
            others = np.delete(gaps, i)
            overlaps += int(others.size > 0 and others.min() <= gaps[i] + 1.0)
        overlaps += int(hit.sum())
        crossed = 0
        if self.leaders:  # a label over a leader line drawn before
            crossed += int(crossings(np.array(self.leaders), np.array([spot.box])).sum())
        if spot.leader:  # a leader line across a label or another leader line
            line = np.array([self._leader(i, spot)])
            if self.taken:
                crossed += int(crossings(line, np.array(self.taken)).sum())
            if self.leaders:
                crossed += int(segments_cross(line[0], np.array(self.leaders)).sum())
            through = crossings(line, self.markers)[0]
            through[i] = False
            return outside, overlaps, crossed, int(through.sum())  # and through other points' markers
        return outside, overlaps, crossed, 0

    def _leader(self, i: int, spot: Spot) -> tuple[float, float, float, float]:
        """The leader line from the marker's edge to the label box's centre."""
        cx, cy = self.centres[i]
        bx, by = (spot.box[0] + spot.box[2]) / 2, (spot.box[1] + spot.box[3]) / 2
        d = math.hypot(bx - cx, by - cy) or 1.0
        r = self.radii[i] + 1.0
        return cx + (bx - cx) * r / d, cy + (by - cy) * r / d, bx, by


def crossings(segments: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """(segments x boxes) True where segment (x0, y0, x1, y1) passes through box (x0, y0, x1, y1): Liang-Barsky clipping."""
    sx, sy = segments[:, None, 0], segments[:, None, 1]
    dx, dy = segments[:, None, 2] - sx, segments[:, None, 3] - sy
    q = np.stack([sx - boxes[None, :, 0], boxes[None, :, 2] - sx, sy - boxes[None, :, 1], boxes[None, :, 3] - sy])
    p = np.stack([np.broadcast_to(v, q.shape[1:]) for v in (-dx, dx, -dy, dy)])
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = q / p
    t0 = np.max(np.where(p < 0, ratio, 0.0), axis=0)
    t1 = np.min(np.where(p > 0, ratio, 1.0), axis=0)
    return (t0 <= t1) & ~np.any((p == 0) & (q < 0), axis=0)


def segments_cross(seg: np.ndarray, others: np.ndarray) -> np.ndarray:
    """True for each of `others` that properly crosses `seg` (touching ends do not count)."""
    def side(ax: Any, ay: Any, bx: Any, by: Any, cx: Any, cy: Any) -> Any:
        return np.sign((bx - ax) * (cy - ay) - (by - ay) * (cx - ax))

    a = side(seg[0], seg[1], seg[2], seg[3], others[:, 0], others[:, 1]) * side(seg[0], seg[1], seg[2], seg[3], others[:, 2], others[:, 3])
    b = side(others[:, 0], others[:, 1], others[:, 2], others[:, 3], seg[0], seg[1]) * side(others[:, 0], others[:, 1], others[:, 2], others[:, 3], seg[2], seg[3])
    return (a < 0) & (b < 0)
