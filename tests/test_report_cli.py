"""The report commands end to end on a real `tpme run --preset ci`, and the report that
`tpme run` writes at its end (or not, with --no-report; a failure there is only a warning)."""
from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest
from records_factory import record

from tpme.cli import build_parser, main
from tpme.metrics.tpme import WEIGHT_PRESETS
from tpme.results.store import load_records


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("run") / "ci"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(["run", "--preset", "ci", "--methods", "fft,frozen", "--out", str(out), "--quiet"])
    assert code == 0, err.getvalue()
    return out, err.getvalue()


def test_run_writes_its_report_and_says_where(ci_run) -> None:
    out, err = ci_run
    assert f"tpme: report in {out}/report/report.html" in err
    for name in ("report.html", "report.md", "efficiency.png", "time_memory.png", "step_times.png", "sensitivity.png"):
        assert (out / "report" / name).is_file(), name
    html = (out / "report" / "report.html").read_text()
    assert "<dt>command line</dt><dd>tpme run" in html and "cpu_tensor_peak" in html


def test_report_command_all_formats(ci_run, tmp_path: Path, capsys) -> None:
    out, _ = ci_run
    assert main(["report", str(out), "--out", str(tmp_path / "r"), "--weights", "memory-bound"]) == 0
    listed = capsys.readouterr().out.split()
    for name in ("report.html", "report.md", "table.tex", "table.csv", "report.json"):
        assert str(tmp_path / "r" / name) in listed
    data = json.loads((tmp_path / "r" / "report.json").read_text())
    assert data["weights"] == list(WEIGHT_PRESETS["memory-bound"])
    assert [r["label"] for r in data["rows"]] == ["frozen", "fft"]


def test_report_group_by_and_merged_inputs(ci_run, tmp_path: Path) -> None:
    out, _ = ci_run
    assert main(["report", str(out), str(out / "results.jsonl"), "--out", str(tmp_path / "g"), "--format", "csv,png", "--group-by", "config.train.batch_size"]) == 0
    assert (tmp_path / "g" / "group_trend.png").is_file()
    assert "fft [batch_size=8]" in (tmp_path / "g" / "table.csv").read_text()


def test_compare_a_run_with_itself(ci_run, capsys) -> None:
    out, _ = ci_run
    assert main(["compare", str(out), str(out), "--fail-on-regression"]) == 0
    assert "0 regression(s)" in capsys.readouterr().out


def test_report_bad_input(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["report", str(tmp_path), "--format", "pdf"]) == 2


def test_score_lists_weight_presets(capsys) -> None:
    assert main(["score", "--list-weights", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert [d["name"] for d in data] == list(WEIGHT_PRESETS)
    assert all(d["use"] and abs(sum(d["weights"]) - 1) < 1e-9 for d in data)


class CannedExecutor:
    """Answers every cell with a hand-built record: the run's table and report steps without training."""

    description = "canned executor (test)"

    def __init__(self) -> None:
        self.jobs = []

    def has_room(self) -> bool:
        return True

    def submit(self, job) -> None:
        self.jobs.append(job)

    def wait(self, timeout_s: float):
        done, self.jobs = [(j, record(j.spec.method, 2.0 if j.spec.method == "fft" else 1.0, 100, 2**20)) for j in self.jobs], []
        return done

    def running(self) -> int:
        return len(self.jobs)

    def stop(self) -> None:
        self.jobs.clear()

    def close(self) -> None:
        return None


@pytest.fixture
def canned(monkeypatch):
    import tpme.sweep.driver as driver

    monkeypatch.setattr(driver, "make_executor", lambda opts, cells: CannedExecutor())


def run_ci(tmp_path: Path, *extra: str) -> int:
    return main(["run", "--preset", "ci", "--methods", "fft,frozen", "--out", str(tmp_path / "run"), "--quiet", *extra])


def test_no_report_skips_it(tmp_path: Path, canned) -> None:
    assert build_parser().parse_args(["run", "--no-report"]).no_report
    assert run_ci(tmp_path, "--no-report") == 0
    assert (tmp_path / "run" / "table.md").is_file() and not (tmp_path / "run" / "report").exists()


def test_a_failing_report_is_a_warning_not_a_lost_run(tmp_path: Path, monkeypatch, capsys, canned) -> None:
    import tpme.reports.build as build

    def broken(*args, **kwargs):
        raise RuntimeError("no fonts")

    monkeypatch.setattr(build, "write_report", broken)
    assert run_ci(tmp_path) == 0
    assert len(load_records(tmp_path / "run")) == 2 and (tmp_path / "run" / "results.jsonl").is_file()
    assert "warning: report not written: RuntimeError: no fonts" in capsys.readouterr().err
