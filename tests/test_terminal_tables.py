"""Every CLI table through one renderer: numbers right-aligned, one unit per column (in its
header), the reports' marks, plain text for pipes and NO_COLOR; --help that cites no file a
user does not have; a failed dataset check that leaves no run directory behind."""
from __future__ import annotations

import argparse
import re

from records_factory import zoo

from tpme.cli import main
from tpme.metrics.tpme import Weights
from tpme.reports.terminal import TextTable, render, use_colour

ANSI = re.compile(r"\x1b\[")
UNIT = re.compile(r"\d\s*(B|KiB|MiB|GiB)\b")


def columns(text: str) -> tuple[list[str], list[str]]:
    """Header line and body lines of a plain table (the line after the dashes rule on)."""
    lines = text.splitlines()
    rule = next(i for i, l in enumerate(lines) if l and set(l) <= {"-", " "})
    body = []
    for l in lines[rule + 1:]:
        if not l.strip():
            break
        body.append(l)
    return lines[rule - 1], body


def test_plain_output_for_pipes_and_no_color(monkeypatch) -> None:
    t = TextTable(["method", "epoch time (s)"], [["fft", "44.0*"], ["frozen", "5.08"]], {1}, ["* extrapolated"])
    assert ANSI.search(render(t, True))
    monkeypatch.setenv("NO_COLOR", "1")

    class Tty:
        def isatty(self) -> bool:
            return True

    assert use_colour(Tty()) is False
    monkeypatch.delenv("NO_COLOR")
    assert use_colour(Tty()) is True
    assert use_colour(__import__("io").StringIO()) is False
    plain = render(t, False)
    assert not ANSI.search(plain) and plain.isascii()


def test_numbers_right_aligned_with_marks_lined_up() -> None:
    t = TextTable(["method", "epoch time (s)"], [["fft", "44.0*"], ["iisan-cached", "2.23"]], {1})
    header, body = columns(render(t, False))
    ends = {len(l) for l in body}
    assert ends == {len(header)} or max(ends) == len(header)
    assert body[0].index("44.0") + 4 == body[1].index("2.23") + 4  # digits end in one place, the mark after them


def estimate_row(method: str, scale: float) -> dict:
    b = {"parameters": int(1.6 * 2**20 * scale), "buffers": 0, "gradients": int(65 * 2**10 * scale), "optimizer_state": 0, "activations": 4 * 2**20,
         "temporaries": 0, "batch": 288 * 2**10}
    return {"status": "ok", "method": method, "precision": "fp32", "gpu": "h100", "fits": True, "total_memory_bytes": 2**30, "gpu_memory_bytes": 80 * 2**30,
            "breakdown": b, "overhead_bytes": 546 * 2**20, "flops_per_step": 1.4e9, "predicted_step_time_s": 0.0023, "predicted_epoch_time_s": 0.018,
            "steps_per_epoch": 8, "batch_size": 8, "cuda_graphs": False}


def test_estimate_table_has_one_unit_per_column_in_its_header() -> None:
    from tpme.cli.commands.estimate import render as render_estimate

    text = render_estimate([estimate_row("fft", 1.0), estimate_row("frozen", 0.0)], 64, "users", colour=False)
    header, body = columns(text)
    assert "params (MiB)" in header and "grads (KiB)" in header and "overhead (MiB)" in header
    assert not any(UNIT.search(l) for l in body), body
    fft = body[0].split()
    assert fft[0] == "fft" and fft[-1] == "0.018"
    assert len(set(len(l) for l in body)) == 1  # right-aligned: every row ends in the last column's edge


def test_params_table_has_a_rule_and_most_trainable_first() -> None:
    from tpme.cli.commands.params import render as render_params

    rows = [{"method": "adapter", "trainable_params": 183_360, "total_params": 494_976}, {"method": "fft", "trainable_params": 428_416, "total_params": 428_416},
            {"method": "bitfit", "trainable_params": 119_296, "total_params": 428_416}]
    header, body = columns(render_params(rows, "ci", colour=False))
    assert [l.split()[0] for l in body] == ["fft", "adapter", "bitfit"]
    assert body[0].split()[1:] == ["428,416", "428,416", "100.00"]


def test_score_keeps_the_marks_and_puts_units_in_headers(tmp_path) -> None:
    from tpme.cli.commands.score import render as render_score
    from tpme.metrics.aggregate import entries_from_records
    from tpme.metrics.tpme import score

    recs = zoo(failed=False)
    w = Weights.parse("paper")
    entries = entries_from_records(recs)
    text = render_score(sorted(score(entries, w), key=lambda s: s.rank), entries, w, recs, colour=False)
    header, body = columns(text)
    assert "epoch time (s)" in header and "peak memory (MiB)" in header and "trainable params (K)" in header
    assert all("*" in l for l in body) and not any(UNIT.search(l) for l in body)
    assert "* epoch time extrapolated" in text


def test_run_table_goes_through_the_renderer() -> None:
    from tpme.reports.table import render_terminal

    text = render_terminal(zoo(), Weights.parse("paper"))
    header, body = columns(text)
    assert header.split()[:3] == ["method", "trainable", "params"] and len(body) == 7
    assert not ANSI.search(text)


def subcommands() -> dict[str, argparse.ArgumentParser]:
    from tpme.cli import build_parser

    parser = build_parser()
    out = {}
    for action in parser._subparsers._group_actions:  # type: ignore[union-attr]
        for name, sub in action.choices.items():
            out[name] = sub
            for inner in getattr(sub, "_subparsers", None) and sub._subparsers._group_actions or []:
                out.update({f"{name} {n}": s for n, s in inner.choices.items()})
    return out


def test_help_cites_no_design_document() -> None:
    subs = subcommands()
    assert {"run", "report", "estimate", "data check"} <= set(subs)
    for name, sub in subs.items():
        assert "DESIGN" not in sub.format_help(), name


def test_a_failed_dataset_check_leaves_no_run_directory(tmp_path, capsys) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "items.tsv").write_text("1\tfoo\n")
    out = tmp_path / "run"
    assert main(["run", "--preset", "ci", "--methods", "frozen", "--dataset", str(bad), "--out", str(out), "--quiet"]) == 2
    assert "no items file" in capsys.readouterr().err
    assert not out.exists()


def test_an_energy_weight_on_the_cpu_is_refused_before_any_cell_runs(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["run", "--preset", "ci", "--methods", "frozen", "--device", "cpu", "--weights", "0.4,0.1,0.4,0.1", "--out", str(out)]) == 2
    assert "no energy is measured" in capsys.readouterr().err and not out.exists()
