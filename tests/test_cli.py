"""CLI smoke tests and bad input: clear messages and meaningful exit codes."""
import csv
import json
import os
import subprocess
import sys

import pytest

from tpme.cli import main


def tpme(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "tpme.cli", *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_methods_json(capsys):
    assert main(["methods", "--json"]) == 0
    names = [m["name"] for m in json.loads(capsys.readouterr().out)]
    assert {"fft", "frozen"} <= set(names)


def test_run_ci_json_and_files(tmp_path):
    out = tmp_path / "run"
    p = tpme("run", "--preset", "ci", "--methods", "fft,frozen", "--out", str(out), "--json", "--quiet")
    assert p.returncode == 0, p.stderr
    records = json.loads(p.stdout)
    assert [r["method"] for r in records] == ["fft", "frozen"]
    assert all(r["status"] == "ok" and r["tpme"] is not None for r in records)
    assert (out / "results.jsonl").is_file() and (out / "table.md").is_file()
    # fft trains everything, so it has the most parameters and the larger TPME
    fft, frozen = records
    assert fft["trainable_params"] == fft["total_params"] > frozen["trainable_params"]
    assert fft["tpme"] > frozen["tpme"]
    # score reads the run directory back
    assert main(["score", str(out), "--json"]) == 0


@pytest.mark.parametrize(
    "args,needle",
    [
        (["run", "--methods", "nosuch"], "unknown method 'nosuch'"),
        (["run", "--weights", "0.6,0.6,0.6"], "must sum to 1"),
        (["run", "--dataset", "/no/such/dir"], "does not exist"),
        (["run", "--preset", "huge"], "unknown preset"),
        (["run", "--backbone", "enormous"], "neither a named size nor a directory"),
        (["run", "--methods", "fft", "--method-opt", "r=4"], "has no option"),
        (["score", "/no/such/results.jsonl"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_a_message(args, needle, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err
    assert needle in err and "tpme: error:" in err


def test_score_csv_paper_figures(tmp_path, capsys):
    path = tmp_path / "paper.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "epoch_time_s", "trainable_params", "peak_memory_gb"])
        w.writerows([("fft", 443, 194_897_216, 47), ("lora", 350, 796_736, 38), ("iisan-cached", 22, 4_113_877, 3)])
    assert main(["score", str(path), "--weights", "paper", "--json"]) == 0
    got = {r["method"]: r for r in json.loads(capsys.readouterr().out)}
    assert got["fft"]["tpme"] == pytest.approx(1.0) and got["fft"]["rank"] == 3
    assert got["iisan-cached"]["tpme"] == pytest.approx(0.1 * (4_113_877 - 796_736) / (194_897_216 - 796_736))
    bad = tmp_path / "bad.csv"
    bad.write_text("method,epoch_time_s\nx,1\n")
    assert main(["score", str(bad)]) == 2
    assert "missing column" in capsys.readouterr().err


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out
