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
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    if not isinstance(fig.canvas, FigureCanvasAgg):
        FigureCanvasAgg(fig)
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


def with_baseline(records: list, hr: float = 0.2) -> list:
    from tpme.results.record import Baseline, QualityValue

    base = Baseline("popularity", {"hr@10": QualityValue(hr, True, "test"), "ndcg@10": QualityValue(hr / 2, True, "test")})
    for r in records:
        r.baselines = {"popularity": base}
    return records


def test_parameter_bars_are_linear_with_their_values_printed() -> None:
    from tpme.reports.plots import efficiency_bars

    summary = summarise(zoo(), PAPER)
    fig = efficiency_bars(summary)
    drawn(fig)
    ax = fig.axes[1]
    assert ax.get_title().startswith("P: trainable parameters")
    assert ax.get_xscale() == "linear" and ax.get_xlim()[0] == 0
    widths = {r.label: p.get_width() for r, p in zip(summary.scored, ax.patches)}
    assert widths["fft"] / widths["frozen"] == pytest.approx(428_416 / 116_800)  # 3.7x drawn as 3.7x
    values = [t.get_text() for t in ax.texts if t.get_gid() == "value"]
    assert ax.get_title() == "P: trainable parameters (K)" and len(values) == len(summary.scored) and "428" in values


def test_extrapolated_figures_are_marked_even_where_the_bar_is_too_short_to_hatch() -> None:
    from tpme.reports.plots import efficiency_bars

    recs = [record("fft", 100.0, 1000, 5e8, source="measured"), record("iisan-cached", 0.2, 10, 1e7, source="extrapolated")]
    fig = efficiency_bars(summarise(recs, PAPER))
    texts = {t.get_text() for t in fig.axes[0].texts if t.get_gid() == "value"}
    assert texts == {"100", "0.200*"}
    assert sorted(str(p.get_hatch()) for p in fig.axes[0].patches) == ["//", "None"]


def test_effectiveness_draws_the_popularity_baseline() -> None:
    from tpme.reports.plots import effectiveness

    fig = effectiveness(summarise(with_baseline(zoo(), 0.2), PAPER))
    for ax in fig.axes:
        lines = [l for l in ax.get_lines() if l.get_gid() == "baseline:popularity"]
        assert len(lines) == 1
        assert ax.get_ylim()[0] <= lines[0].get_ydata()[0] <= ax.get_ylim()[1]
    assert fig.axes[0].get_lines()[0].get_ydata()[0] == pytest.approx(0.2)


def test_report_html_and_markdown_name_the_baseline_and_that_it_beats_every_method(tmp_path) -> None:
    from tpme.reports.build import write_report

    write_report(with_baseline(zoo(), 0.2), tmp_path, PAPER, ("html", "md"))
    for name in ("report.html", "report.md"):
        text = (tmp_path / name).read_text()
        assert "popularity baseline" in text and "HR@10 0.2000 (beats every method (6))" in text, name


def sensitivity_figure(records, weights=PAPER):
    from tpme.metrics.aggregate import entries_from_records
    from tpme.metrics.sensitivity import sensitivity
    from tpme.reports.plots import ternary

    summary = summarise(records, weights)
    sens = sensitivity(entries_from_records(records), weights)
    return summary, sens, ternary(summary, sens)


def test_sensitivity_svg_is_vector_only(tmp_path) -> None:
    from tpme.reports.build import write_report

    write_report(zoo(), tmp_path, PAPER, ("svg", "pdf"))
    svg = (tmp_path / "sensitivity.svg").read_text()
    assert "<image" not in svg and "data:image/png" not in svg
    assert (tmp_path / "sensitivity.pdf").read_bytes()[:5] == b"%PDF-"


def test_ternary_regions_are_exact_polygons_matching_the_grid() -> None:
    """Each region's area share equals the share of grid points it wins, within the grid's resolution."""
    from matplotlib.patches import Polygon

    summary, sens, fig = sensitivity_figure(zoo())
    ax = fig.axes[0]
    regions = {p.get_gid()[len("region:"):]: p for p in ax.patches if isinstance(p, Polygon) and (p.get_gid() or "").startswith("region:")}
    assert set(regions) == {m for m, s in sens.shares.items() if s > 0}
    total = math.sqrt(3) / 4
    for name, patch in regions.items():
        xy = patch.get_xy()
        area = 0.5 * abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(xy[:-1], xy[1:])))
        assert area / total == pytest.approx(sens.shares[name], abs=0.05), name
    assert not ax.images


def test_ternary_ties_are_hatched_and_no_method_wears_the_tie_look() -> None:
    from matplotlib.colors import to_hex

    recs = [record("fft", 10.0, 1000, 9e8), record("iisan", 1.0, 100, 1e8), record("iisan-cached", 1.0, 100, 1e8), record("frozen", 5.0, 50, 5e8)]
    summary, sens, fig = sensitivity_figure(recs)
    patches = {p.get_gid(): p for p in fig.axes[0].patches if (p.get_gid() or "").startswith("region:")}
    tie = patches["region:iisan = iisan-cached"]
    assert tie.get_hatch() and to_hex(tie.get_facecolor()) == "#ffffff"
    for gid, p in patches.items():
        if p is not tie:
            assert not p.get_hatch() and to_hex(p.get_facecolor()) not in ("#ffffff", "#dddddd"), gid


def test_ternary_has_ticks_on_the_time_axis() -> None:
    _, _, fig = sensitivity_figure(zoo())
    for axis in ("a1", "a2", "a3"):
        ticks = [t.get_text() for t in fig.axes[0].texts if t.get_gid() == f"tick:{axis}"]
        assert ticks == ["0.2", "0.4", "0.6", "0.8"], axis


def test_energy_is_a_fourth_term_and_three_weights_keep_their_meaning() -> None:
    from tpme.metrics.tpme import Entry, Weights, score

    entries = [Entry("a", 10, 100, 1e9, 500.0), Entry("b", 5, 200, 2e9, 100.0), Entry("c", 1, 50, 3e9, 300.0)]
    three = score(entries, Weights.parse("0.45,0.1,0.45"))
    four0 = score(entries, Weights.parse("0.45,0.1,0.45,0"))
    assert [s.tpme for s in three] == [s.tpme for s in four0]
    four = score(entries, Weights.parse("0,0,0,1"))
    assert [s.tpme for s in four] == [1.0, 0.0, 0.5]
    from tpme.errors import TpmeError

    with pytest.raises(TpmeError, match="no energy figure"):
        score([Entry("a", 1, 1, 1), Entry("b", 2, 2, 2)], Weights.parse("0.25,0.25,0.25,0.25"))


def test_the_baseline_is_reported_even_when_the_methods_were_not_evaluated(tmp_path) -> None:
    from tpme.reports.build import write_report

    write_report(with_baseline(zoo(hr=False), 0.2031), tmp_path, PAPER, ("html", "md"))
    for name in ("report.html", "report.md"):
        assert "popularity baseline (not trained, not scored): HR@10 0.2031" in (tmp_path / name).read_text(), name


def many(n: int = 42, short: bool = False) -> list:
    """A crowded study like the imported PEFT comparison: long names (or `short` ones), most methods in one tight cluster, a few far out."""
    import random

    rnd = random.Random(7)
    recs = []
    for i in range(n):
        far = i % 10 == 0
        t = rnd.uniform(900, 7000) if far else rnd.uniform(900, 1400)
        mem = rnd.uniform(18, 37) if far else rnd.uniform(19, 24)
        recs.append(record(f"m{i}" if short else f"method{i}/llama-3.2-3B-rank{8 * (i + 1)}-lr_0.000{i % 7 + 1}", t, rnd.randint(10_000, 900_000), mem * 2**30,
                           hr=rnd.uniform(0.3, 0.55) if not far else rnd.uniform(0.0, 0.6), ndcg=rnd.uniform(0.1, 0.3)))
    return recs


def drawn_as_is(fig):
    """Draw at the figure's own dpi, so that every artist's cached position matches the renderer's."""
    drawn(fig)
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def text_boxes(fig, renderer) -> list:
    return [box for ax in fig.axes for box in text_boxes_of(ax, renderer)]


@pytest.mark.parametrize("build", ["time_memory", "effectiveness"])
def test_crowded_figures_number_every_point_with_no_label_overlapping_or_outside(build) -> None:
    from tpme.reports import plots

    summary = summarise(many(), PAPER)
    fig = getattr(plots, build)(summary)
    renderer = drawn_as_is(fig)
    boxes = text_boxes(fig, renderer)
    page = fig.bbox
    for text, b in boxes:
        assert page.x0 <= b.x0 and b.x1 <= page.x1 and page.y0 <= b.y0 and b.y1 <= page.y1, f"{text!r} outside the figure"
    clashes = [(a, c) for k, (a, b) in enumerate(boxes) for c, d in boxes[k + 1:] if b.overlaps(d)]
    assert clashes == []
    titles = [ax.title.get_window_extent(renderer) for ax in fig.axes]
    assert [t for t, b in boxes if any(b.overlaps(tb) for tb in titles)] == []
    key = {t.get_text() for leg in fig.legends for t in leg.get_texts()}
    assert key == {f"{k}  {r.label}" for k, r in enumerate(summary.scored, 1)}
    for ax in fig.axes:  # every point carries its number, alone or before its name
        numbers = sorted(int(t.split(" ", 1)[0]) for t, _ in text_boxes_of(ax, renderer))
        assert numbers == list(range(1, len(summary.scored) + 1))


def text_boxes_of(ax, renderer) -> list:
    """(text, box of the text alone: an annotation's own extent would include its leader line)."""
    from matplotlib.text import Text

    return [(t.get_text(), Text.get_window_extent(t, renderer)) for t in ax.texts if t.get_gid() in ("name", "number")]


def test_crowded_time_memory_names_the_notable_points_where_there_is_room() -> None:
    """Pareto front, extremes and the best three by TPME are named beside their number; the rest carry their number alone."""
    from tpme.reports.plots import notable, time_memory

    summary = summarise(many(30, short=True), PAPER)
    fig = time_memory(summary)
    renderer = drawn_as_is(fig)
    points = [(r.peak_memory_bytes / 2**30, r.epoch_time_s) for r in summary.scored]
    want = {f"{k + 1} {summary.scored[k].label}" for k in notable(points)}
    texts = {t for t, _ in text_boxes(fig, renderer)}
    assert want <= texts
    assert {t for t in texts if " " not in t} == {str(k + 1) for k in range(len(points)) if f"{k + 1} {summary.scored[k].label}" not in want}


def test_few_points_are_named_and_need_no_key() -> None:
    from tpme.reports.plots import time_memory

    summary = summarise(many(6), PAPER)
    fig = time_memory(summary)
    drawn(fig)
    assert {t.get_text() for t in fig.axes[0].texts if t.get_gid() == "name"} == {r.label for r in summary.scored}
    assert fig.legends == []


def test_a_name_that_cannot_be_placed_cleanly_numbers_the_points_instead() -> None:
    """Two points only, but one name longer than the axes are wide: numbers and a key, nothing outside the figure."""
    from tpme.reports.plots import time_memory

    recs = [record("fft", 10.0, 1000, 9e8), record("lora-" + "x" * 200, 2.0, 100, 2e8)]
    summary = summarise(recs, PAPER)
    fig = time_memory(summary)
    renderer = drawn_as_is(fig)
    texts = [t for t, _ in text_boxes(fig, renderer)]
    assert sorted(int(t.split(" ", 1)[0]) for t in texts) == [1, 2] and "1" in texts  # the long name only in the key
    assert {t.get_text() for t in fig.legends[0].get_texts()} == {f"{k}  {r.label}" for k, r in enumerate(summary.scored, 1)}
    assert legends_inside(fig) == []


def legends_inside(fig) -> list[str]:
    """The texts of every legend entry (figure or axes legends) whose box leaves the figure."""
    renderer = drawn_as_is(fig)
    page = fig.bbox
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend()]
    assert legends, "no legend drawn"
    out = []
    for leg in legends:
        for t in [*leg.get_texts(), leg.get_title()]:
            b = t.get_window_extent(renderer)
            if t.get_text() and not (page.x0 - 0.5 <= b.x0 and b.x1 <= page.x1 + 0.5 and page.y0 - 0.5 <= b.y0 and b.y1 <= page.y1 + 0.5):
                out.append(t.get_text())
    return out


def test_sensitivity_legend_with_long_names_stays_inside_the_figure() -> None:
    recs = [record("prefixtuning/llama-3.2-3B-tokens50-init_prefix-lr_0.005", 1.0, 900_000, 9e8),
            record("beft/llama-3.2-3B-target-v_proj-with-a-long-suffix", 5.0, 1_000, 5e8),
            record("tinylora/llama-3.2-3B-weight-tying-and-more-words", 9.0, 50_000, 1e8)]
    _, _, fig = sensitivity_figure(recs)
    assert legends_inside(fig) == []


def test_memory_breakdown_legend_with_seven_categories_stays_inside_the_figure() -> None:
    from tpme.reports.plots import CATEGORY_COLOURS, memory_breakdown

    summary = summarise(zoo(), PAPER)
    for r in summary.scored:
        r.memory_breakdown = {c: float(2**20 * (k + 1)) for k, c in enumerate(CATEGORY_COLOURS)}
    fig = memory_breakdown(summary)
    assert legends_inside(fig) == []
    assert len(fig.legends[0].get_texts()) == len(CATEGORY_COLOURS)


def test_crowded_figures_keep_their_key_inside_the_figure() -> None:
    from tpme.reports.plots import effectiveness, time_memory

    summary = summarise(many(), PAPER)
    for build in (time_memory, effectiveness):
        assert legends_inside(build(summary)) == [], build.__name__
