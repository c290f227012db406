"""Figures read from their artists: labels beside their own markers, parameter bars on a
linear axis with their values, extrapolated figures marked, the popularity baseline drawn,
the sensitivity map as exact vector polygons."""
from __future__ import annotations

import io
import math

import pytest
from records_factory import record, zoo

from tpme.metrics.tpme import Weights
from tpme.reports.summary import Summary, summarise

PAPER = Weights.parse("paper")
MIB = 2**20


def drawn(fig):
    fig.savefig(io.BytesIO(), format="png", dpi=200)  # the final layout, as written
    return fig.canvas.get_renderer()


def label_owners(fig, ax, summary: Summary) -> dict[str, str]:
    """Each label text -> the marker whose edge is nearest its box (or its own, where a leader line joins them)."""
    renderer = drawn(fig)
    px = fig.dpi / 72
    markers = {}
    for coll in ax.collections:
        if len(coll.get_offsets()) == 1 and coll.get_gid() in {r.label for r in summary.rows}:
            markers[coll.get_gid()] = (ax.transData.transform(coll.get_offsets()[0]), math.sqrt(coll.get_sizes()[0]) / 2 * px)
    assert markers, "no labelled markers found"
    owners = {}
    for t in ax.texts:
        if t.get_text() not in markers:
            continue
        if getattr(t, "arrow_patch", None) is not None:  # a leader line names the marker it ends at
            end = ax.transData.transform(t.xy)
            owners[t.get_text()] = min(markers, key=lambda k: math.dist(markers[k][0], end))
            continue
        b = t.get_window_extent(renderer)
        gap = {k: math.hypot(max(b.x0 - c[0], 0, c[0] - b.x1), max(b.y0 - c[1], 0, c[1] - b.y1)) - r for k, (c, r) in markers.items()}
        owners[t.get_text()] = min(gap, key=gap.get)
    return owners


def crowded() -> list:
    """A tight cluster like `--preset ci` on a CPU: lora and lora-loralib nearly coincide, adapter and bitfit beside them."""
    spec = [("fft", 72.5, 428_416, 12.46), ("adapter", 20.0, 183_360, 9.43), ("lora", 13.7, 124_992, 9.23), ("lora-loralib", 14.2, 124_992, 9.23),
            ("bitfit", 10.7, 119_296, 8.22), ("iisan", 15.7, 187_462, 4.77), ("frozen", 17.6, 116_800, 3.99), ("iisan-cached", 2.87, 187_462, 3.31),
            ("iisan-x", 16.5, 160_000, 4.4), ("lora-y", 12.5, 130_000, 9.0)]
    return [record(m, t, p, mem * MIB, hr=0.05 + i / 1000) for i, (m, t, p, mem) in enumerate(spec)]


@pytest.mark.parametrize("records", [zoo(), crowded()], ids=["zoo", "crowded"])
def test_time_memory_labels_sit_nearest_their_own_marker(records) -> None:
    from tpme.reports.plots import time_memory

    summary = summarise(records, PAPER)
    fig = time_memory(summary)
    owners = label_owners(fig, fig.axes[0], summary)
    assert set(owners) == {r.label for r in summary.scored}
    assert {k: v for k, v in owners.items() if k != v} == {}
