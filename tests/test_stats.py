"""Bootstrap intervals, outlier flags, TPME/rank spread and the distribution-based compare."""
from __future__ import annotations

import numpy as np
import pytest
from records_factory import record, replaced

from tpme.metrics.stats import LabelData, Repeat, epoch_time_draws, median_interval, outlier_steps, ratio_interval, rng_for, table_spread, tpme_draws
from tpme.metrics.tpme import PAPER_WEIGHTS, Entry, score
from tpme.reports.compare import compare
from tpme.reports.summary import summarise
from tpme.reports.table import build_table, render_csv
from tpme.results.record import Provenance, Record, Timing

STEPS_PER_EPOCH = 8


def steps(rng: np.random.Generator, median_s: float, n: int = 30) -> list[float]:
    """Skewed step times as a busy host gives them: lognormal around the median, 5 % slow spikes (x3)."""
    x = median_s * rng.lognormal(0.0, 0.1, n)
    spikes = rng.random(n) < 0.05
    return list(np.where(spikes, 3 * x, x))


def synthetic(method: str, times: list[float], p: int, m: int) -> Record:
    r = record(method, float(np.median(times)) * STEPS_PER_EPOCH, p, m)
    return replaced(r, step_time_s=float(np.median(times)), timing=Timing(steps=len(times), step_times_s=times))


def pair(seed: int, slowdown: float) -> tuple[list[Record], list[Record]]:
    """Two methods measured twice from the same distributions, the candidate's fft slowed by `slowdown`."""
    rng = np.random.default_rng(seed)
    base = [synthetic("fft", steps(rng, 1.0), 400_000, 40 << 20), synthetic("frozen", steps(rng, 0.1), 100_000, 4 << 20)]
    cand = [synthetic("fft", steps(rng, slowdown), 400_000, 40 << 20), synthetic("frozen", steps(rng, 0.1), 100_000, 4 << 20)]
    return base, cand


def test_same_distribution_never_regresses_in_100_seeded_trials() -> None:
    alarms = []
    for seed in range(100):
        base, cand = pair(seed, 1.0)
        result = compare(base, cand, 0.05, PAPER_WEIGHTS)
        alarms += [(seed, c.label, c.metric, c.interval) for c in result.regressions]
        assert {c.metric for c in result.rows if c.interval is not None} == {"epoch_time_s", "tpme"}
    assert alarms == []


def test_planted_slowdown_is_detected_in_each_of_100_trials() -> None:
    missed = []
    for seed in range(100):
        base, cand = pair(seed, 1.5)
        verdict = {(c.label, c.metric): c.verdict for c in compare(base, cand, 0.05, PAPER_WEIGHTS).rows}
        if verdict[("fft", "epoch_time_s")] != "worse":
            missed.append(seed)
        assert verdict[("frozen", "epoch_time_s")] != "worse"
    assert missed == []


def test_exact_figures_keep_exact_comparison() -> None:
    base, cand = pair(0, 1.0)
    cand = [replaced(cand[0], trainable_params=500_000), cand[1]]
    rows = {(c.label, c.metric): c for c in compare(base, cand, 0.05, PAPER_WEIGHTS).rows}
    assert rows[("fft", "trainable_params")].verdict == "worse" and rows[("fft", "trainable_params")].interval is None
    assert rows[("frozen", "peak_memory_bytes")].verdict == "within noise"


def test_sides_without_step_times_are_compared_exactly() -> None:
    b = [replaced(record("fft", 10.0, 1, 1), timing=Timing())]
    c = [replaced(record("fft", 10.4, 1, 1), timing=Timing())]
    row = next(x for x in compare(b, c, 0.05, PAPER_WEIGHTS).rows if x.metric == "epoch_time_s")
    assert row.interval == pytest.approx([1.04, 1.04]) and row.verdict == "within noise"
    c = [replaced(record("fft", 10.6, 1, 1), timing=Timing())]
    assert next(x for x in compare(b, c, 0.05, PAPER_WEIGHTS).rows if x.metric == "epoch_time_s").verdict == "worse"


def test_median_interval_is_seeded_covers_the_median_and_narrows_with_more_steps() -> None:
    rng = np.random.default_rng(1)
    few, many = rng.lognormal(0, 0.2, 10), rng.lognormal(0, 0.2, 400)
    a, b = median_interval(few, key="x"), median_interval(few, key="x")
    assert a == b
    assert a.low <= np.median(few) <= a.high
    wide, narrow = a.high - a.low, median_interval(many).high - median_interval(many).low
    assert narrow < wide / 2
    assert median_interval([2.0, 2.0, 2.0]).as_list() == [2.0, 2.0]


def test_outliers_are_flagged_by_robust_z() -> None:
    assert outlier_steps([1.0, 1.02, 0.98, 1.01, 0.99, 5.0]) == [5]
    assert outlier_steps([1.0, 1.0, 1.0, 1.0, 4.0]) == [4]  # MAD 0: mean absolute deviation decides
    assert outlier_steps([1.0, 1.1, 0.9, 1.05]) == []
    assert outlier_steps([1.0, 9.0]) == []  # too few to call anything an outlier


def test_epoch_draws_resample_repeats_and_steps() -> None:
    fixed = epoch_time_draws([Repeat(10.0), Repeat(10.0)], 200, rng_for(0))
    assert np.all(fixed == 10.0)
    spread = epoch_time_draws([Repeat(10.0), Repeat(14.0)], 500, rng_for(0))
    assert set(np.round(spread, 6)) == {10.0, 12.0, 14.0}
    steps_only = epoch_time_draws([Repeat(8.0, [0.9, 1.0, 1.1])], 500, rng_for(0))
    assert steps_only.min() == pytest.approx(7.2) and steps_only.max() == pytest.approx(8.8)
    with_parts = epoch_time_draws([Repeat(10.0, [0.9, 1.0, 1.1], fixed_s=2.0)], 500, rng_for(0))  # 2 s timed once (official epoch)
    assert with_parts.min() == pytest.approx(2.0 + 7.2) and with_parts.max() == pytest.approx(2.0 + 8.8)
    assert ratio_interval([Repeat(10.0)], [Repeat(15.0)]).as_list() == pytest.approx([1.5, 1.5])  # no spread: the exact ratio


def test_tpme_draws_match_the_scorer() -> None:
    entries = [Entry("a", 3.0, 10, 5), Entry("b", 1.0, 30, 9), Entry("c", 2.0, 20, 1)]
    drawn = tpme_draws(np.array([[e.epoch_time_s for e in entries]]), [e.trainable_params for e in entries], [e.peak_memory for e in entries], PAPER_WEIGHTS)
    assert drawn[0] == pytest.approx([s.tpme for s in score(entries, PAPER_WEIGHTS)])


def test_ranks_that_are_not_separable_are_ties() -> None:
    noisy = [1.0, 1.3, 0.8, 1.2, 0.9]
    labels = [
        LabelData("a", [Repeat(8.0, noisy)], 100, 100), LabelData("b", [Repeat(8.2, noisy)], 100, 100),
        LabelData("c", [Repeat(80.0, [10.0, 10.1, 9.9])], 100, 200),
    ]
    spread = table_spread(labels, PAPER_WEIGHTS)
    assert spread["a"].tied_with == ("b",) and spread["b"].tied_with == ("a",) and spread["c"].tied_with == ()
    assert spread["a"].rank == (1, 2) and spread["b"].rank == (1, 2) and spread["c"].rank == (3, 3)
    assert spread["c"].epoch_time.low == pytest.approx(79.2) and spread["c"].epoch_time.high == pytest.approx(80.8)


def test_tables_show_spread_ties_and_csv_intervals() -> None:
    base, _ = pair(3, 1.0)
    twin = replaced(base[1], method="frozen-twin", label="frozen-twin", cell_key="twin")
    summary = summarise([*base, twin], PAPER_WEIGHTS)
    rows = {r.label: r for r in summary.rows}
    assert rows["frozen"].tied_with == ["frozen-twin"] and rows["fft"].tied_with == []
    lo, hi = rows["fft"].epoch_time_ci
    assert lo < rows["fft"].epoch_time_s < hi
    cells = {c[0]: c for c in build_table(summary).cells}
    assert " ± " in cells["fft"][4] and cells["frozen"][6].endswith("=") and not cells["fft"][6].endswith("=")
    header, *lines = render_csv(summary).splitlines()
    assert "epoch_time_ci_low_s" in header.split(",") and "tied_with" in header.split(",")


def test_a_change_measured_on_a_busy_host_is_inconclusive() -> None:
    base, cand = pair(0, 1.5)
    busy = Provenance(host_state={"busy": True, "reasons": ["other processes used 1.50 CPU cores"]})
    cand = [replaced(r, provenance=busy) for r in cand]
    result = compare(base, cand, 0.05, PAPER_WEIGHTS)
    verdict = {(c.label, c.metric): c.verdict for c in result.rows}
    assert verdict[("fft", "epoch_time_s")] == "inconclusive: busy host" and verdict[("fft", "tpme")] == "inconclusive: busy host"
    assert result.regressions == [] and result.busy == {"candidate": ["fft", "frozen"]}
    assert verdict[("fft", "trainable_params")] == "within noise"  # exact figures do not depend on the load


def test_spread_never_prints_in_exponent_notation():
    from tpme.reports.table import _spread

    assert [_spread(w) for w in (130.2, 16.4, 1.7, 0.0093)] == ["130", "16", "1.7", "0.0093"]
