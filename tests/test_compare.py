"""`tpme compare` on synthetic result sets with known changes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from records_factory import CONFIG, record, replaced, write_jsonl, zoo

from tpme.cli import main
from tpme.errors import TpmeError
from tpme.reports.compare import parse_threshold


def scaled(records, method: str, field: str, factor: float):
    out = []
    for r in records:
        if r.method == method and getattr(r, field) is not None:
            value = getattr(r, field) * factor
            r = replaced(r, **{field: int(value) if isinstance(getattr(r, field), int) else value})
        out.append(r)
    return out


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "base" / "results.jsonl", zoo())


def run_json(capsys, *args: str) -> tuple[int, dict]:
    code = main(["compare", *args, "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_known_regression_fails_with_the_flag(base: Path, tmp_path: Path, capsys) -> None:
    cand = write_jsonl(tmp_path / "cand" / "results.jsonl", scaled(zoo(), "lora", "epoch_time_s", 1.5))
    code, data = run_json(capsys, str(base), str(cand), "--fail-on-regression")
    assert code == 1
    worse = [(r["label"], r["metric"]) for r in data["rows"] if r["verdict"] == "worse"]
    assert ("lora", "epoch_time_s") in worse
    lora_t = next(r for r in data["rows"] if r["label"] == "lora" and r["metric"] == "epoch_time_s")
    assert lora_t["ratio"] == pytest.approx(1.5)
    assert all(r["verdict"] in ("within noise", "n/a") for r in data["rows"] if r["label"] in ("fft", "adapter"))
    assert main(["compare", str(base), str(cand)]) == 0  # reported, not failed, without the flag
    assert "lora epoch_time_s" in capsys.readouterr().out


def test_improvement_and_noise(base: Path, tmp_path: Path, capsys) -> None:
    cand = write_jsonl(tmp_path / "cand" / "results.jsonl", scaled(scaled(zoo(), "fft", "peak_memory_bytes", 0.5), "iisan", "epoch_time_s", 1.02))
    code, data = run_json(capsys, str(base), str(cand), "--fail-on-regression")
    assert code == 0
    verdict = {(r["label"], r["metric"]): r["verdict"] for r in data["rows"]}
    assert verdict[("fft", "peak_memory_bytes")] == "better"
    assert verdict[("iisan", "epoch_time_s")] == "within noise"
    assert verdict[("fft", "hr@10")] == "within noise"


def test_spread_of_repeats_widens_the_band(tmp_path: Path, capsys) -> None:
    """Time: the spread of repeats widens the bootstrap interval of the ratio; quality (exact rule): it widens the band."""
    b = write_jsonl(tmp_path / "b" / "results.jsonl", [record("fft", 10.0, 1, 1, hr=0.10), record("fft", 14.0, 1, 1, repeat=1, hr=0.14), record("frozen", 1.0, 1, 1, hr=0.1)])
    c = write_jsonl(tmp_path / "c" / "results.jsonl", [record("fft", 13.0, 1, 1, hr=0.13), record("frozen", 1.0, 1, 1, hr=0.1)])
    code, data = run_json(capsys, str(b), str(c), "--fail-on-regression")
    row = next(r for r in data["rows"] if r["label"] == "fft" and r["metric"] == "epoch_time_s")
    assert row["interval"][0] < 1.0 < 13 / 12 < row["interval"][1] and row["verdict"] == "within noise" and code == 0
    hr = next(r for r in data["rows"] if r["label"] == "fft" and r["metric"] == "hr@10")
    assert hr["noise"] == pytest.approx(0.04 / 0.12) and hr["verdict"] == "within noise"


def test_cross_device_is_refused_unless_forced(base: Path, tmp_path: Path, capsys) -> None:
    cand = write_jsonl(tmp_path / "cand" / "results.jsonl", [replaced(r, provenance=replaced(r.provenance, device={"name": "NVIDIA H200"})) for r in zoo()])
    assert main(["compare", str(base), str(cand)]) == 2
    err = capsys.readouterr().err
    assert "devices differ" in err and "--force" in err
    code, data = run_json(capsys, str(base), str(cand), "--force")
    assert code == 0 and data["forced"] and data["mismatches"] and not data["comparable"]
    assert main(["compare", str(base), str(cand), "--force"]) == 0
    assert "WARNING (forced): devices differ" in capsys.readouterr().out


def test_config_difference_is_refused_but_measurement_length_is_not(base: Path, tmp_path: Path, capsys) -> None:
    big = {**CONFIG, "train": {**CONFIG["train"], "batch_size": 32}}
    cand = write_jsonl(tmp_path / "cand" / "results.jsonl", [replaced(r, config=big) for r in zoo()])
    assert main(["compare", str(base), str(cand)]) == 2
    assert "train.batch_size 8 -> 32" in capsys.readouterr().err
    longer = {**CONFIG, "preset": "custom", "train": {**CONFIG["train"], "steps": 50, "warmup_steps": 5}}
    same = write_jsonl(tmp_path / "same" / "results.jsonl", [replaced(r, config=longer) for r in zoo()])
    assert main(["compare", str(base), str(same), "--fail-on-regression"]) == 0


def test_threshold_parsing() -> None:
    assert parse_threshold("5%") == pytest.approx(0.05)
    assert parse_threshold("0.1") == pytest.approx(0.1)
    for bad in ("5", "abc", "-1%", "150%"):
        with pytest.raises(TpmeError):
            parse_threshold(bad)
