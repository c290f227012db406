"""A run written before the typed record (schema tpme.result/1, by commit fbc27ef: `tpme run
--preset ci --methods frozen,iisan-cached --estimate`) still loads, scores and reports, and its
iisan-cached memory breakdown keeps the hidden-state cache (buffers) the old report dropped."""
from __future__ import annotations

import shutil
from pathlib import Path

from tpme.metrics.tpme import PAPER_WEIGHTS
from tpme.reports.build import write_report
from tpme.reports.summary import memory_breakdown, summarise
from tpme.results.record import SCHEMA
from tpme.results.store import load_records

FIXTURE = Path(__file__).parent / "fixtures" / "results_v1.jsonl"


def test_v1_records_are_upgraded_with_their_figures() -> None:
    records = load_records(FIXTURE)
    assert [r.method for r in records] == ["frozen", "iisan-cached"]
    assert all(r.schema == SCHEMA and r.scenario == "recommendation" for r in records)
    frozen = records[0]
    assert (frozen.trainable_params, frozen.total_params, frozen.peak_memory_bytes) == (116800, 428416, 4108604)
    assert frozen.timing.step_times_s and frozen.memory.cpu_tensor_peak_bytes == frozen.peak_memory_bytes


def test_v1_iisan_cached_breakdown_shows_its_cache() -> None:
    cached = load_records(FIXTURE)[1]
    breakdown = memory_breakdown(cached)
    assert breakdown["buffers"] > 0, "the hidden-state cache is a buffer of iisan-cached's tower"
    assert sum(breakdown.values()) == cached.estimate.peak_memory_bytes


def test_v1_run_reports(tmp_path: Path) -> None:
    run = tmp_path / "old-run"
    run.mkdir()
    shutil.copy(FIXTURE, run / "results.jsonl")
    records = load_records(run)
    summary = summarise(records, PAPER_WEIGHTS)
    assert [row.label for row in summary.rows] == ["frozen", "iisan-cached"]
    write_report(records, tmp_path / "report", PAPER_WEIGHTS, formats=["png", "html", "md"])
    html = (tmp_path / "report" / "report.html").read_text()
    assert "iisan-cached" in html and (tmp_path / "report" / "memory_breakdown.png").stat().st_size > 0
