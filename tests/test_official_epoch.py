"""The official epoch: under `--protocol official` a cell times the official code's per-epoch
validation, test and checkpoint once after its timed window, and the epoch time is their sum
with the training (the paper's definition); the estimate adds the same parts. Under tpme's
protocol nothing changes."""
import os
from pathlib import Path

import pytest
import torch

from tpme.bench.cell import CellSpec, run_cell
from tpme.cli import main
from tpme.errors import TpmeError
from tpme.estimate.api import estimate_records
from tpme.estimate.gpus import CHECKPOINT_WRITE_BYTES_S, resolve_gpus
from tpme.results.record import Record
from tpme.scenarios import get_scenario
from tpme.scenarios.recommendation.config import preset
from tpme.scenarios.recommendation.epoch_extras import CHECKPOINT_PREFIX

REC = get_scenario("recommendation")
PARTS = {"train", "validation", "test", "checkpoint"}


def spec(method: str, proto: str, bundle: Path, cache: Path, **changes) -> CellSpec:
    cfg = REC.config_for_method(preset("ci").replace(protocol=proto, **changes), method)
    return CellSpec(method, cfg.to_dict(), str(bundle), cache_dir=str(cache))


@pytest.fixture
def saved(monkeypatch):
    """Every checkpoint torch.save wrote: (the file's path, its size when written, what was saved)."""
    calls = []
    real = torch.save

    def save(obj, f, *args, **kwargs):
        real(obj, f, *args, **kwargs)
        name = getattr(f, "name", None)
        if isinstance(name, str) and Path(name).name.startswith(CHECKPOINT_PREFIX):
            f.flush()
            calls.append((Path(name), os.path.getsize(name), obj))

    monkeypatch.setattr(torch, "save", save)
    return calls


def test_official_record_times_validation_test_and_checkpoint(ci_bundle_path, tmp_path, saved):
    work = tmp_path / "cell"
    work.mkdir()
    (work / "spec.json").write_text("kept")
    rec = run_cell(spec("fft", "official", ci_bundle_path, tmp_path / "cache"), workdir=work)
    parts = rec.timing.epoch_parts_s
    assert set(parts) == PARTS and all(v > 0 for v in parts.values()), parts
    assert rec.epoch_time_s == pytest.approx(sum(parts.values()))
    assert parts["train"] == pytest.approx(rec.step_time_s * rec.steps_per_epoch)  # the training part is the old formula
    assert rec.timing.timed_once_s == pytest.approx(rec.epoch_time_s - parts["train"])
    lo, hi = rec.timing.epoch_time_ci_s
    assert lo <= rec.epoch_time_s <= hi
    assert not rec.quality.metrics and not rec.quality.evaluation  # no --eval needed: the extras build their own evaluator
    [(path, size, obj)] = saved
    assert path.parent == work and size == rec.timing.checkpoint_bytes > 0
    assert set(obj) == {"model_state_dict", "optimizer", "rng_state"} and obj["optimizer"]["state"]
    assert not path.exists()  # removed again; nothing else in the folder changed
    assert [p.name for p in work.iterdir()] == ["spec.json"] and (work / "spec.json").read_text() == "kept"
    again = Record.from_dict(rec.to_dict())
    assert again.timing.epoch_parts_s == parts and again.timing.checkpoint_bytes == rec.timing.checkpoint_bytes


def test_official_cached_iisan_saves_no_checkpoint_per_epoch(ci_bundle_path, tmp_path, saved):
    """The official Code_Cached has its per-epoch save_model commented out."""
    rec = run_cell(spec("iisan-cached", "official", ci_bundle_path, tmp_path))
    assert set(rec.timing.epoch_parts_s) == {"train", "validation", "test"} and rec.timing.checkpoint_bytes is None
    assert rec.epoch_time_s == pytest.approx(sum(rec.timing.epoch_parts_s.values()))
    assert saved == []


def test_tpme_record_has_no_parts_and_the_old_epoch_time(ci_bundle_path, tmp_path, saved):
    rec = run_cell(spec("fft", "tpme", ci_bundle_path, tmp_path))
    assert rec.timing.epoch_parts_s == {} and rec.timing.checkpoint_bytes is None
    assert "epoch_parts_s" not in rec.to_dict()["timing"]
    assert rec.epoch_time_s == pytest.approx(rec.step_time_s * rec.steps_per_epoch)
    assert saved == []


def test_extras_neither_disturb_nor_double_count_the_quality_evaluation(ci_bundle_path, tmp_path, monkeypatch):
    """With --eval over measured epochs, the quality figures are those of the same run without
    the extras, the quality evaluation runs once per epoch as before and the extras run their
    own two passes (so neither is counted as the other)."""
    import tpme.bench.cell as cell
    from tpme.scenarios.recommendation.evaluate import Evaluator

    calls = {"evaluate": 0, "split_pass": 0}
    for name in calls:
        def counted(self, *args, _real=getattr(Evaluator, name), _name=name, **kwargs):
            calls[_name] += 1
            return _real(self, *args, **kwargs)
        monkeypatch.setattr(Evaluator, name, counted)
    with_extras = run_cell(spec("fft", "official", ci_bundle_path, tmp_path, eval=True, epochs=1, steps=None))
    assert calls == {"evaluate": 1, "split_pass": 2}
    monkeypatch.setattr(cell, "_epoch_extras", lambda setup, workdir: None)
    without = run_cell(spec("fft", "official", ci_bundle_path, tmp_path, eval=True, epochs=1, steps=None))
    assert with_extras.quality.evaluation["test"] == without.quality.evaluation["test"]
    assert with_extras.quality.evaluation["valid"] == without.quality.evaluation["valid"]
    parts = with_extras.timing.epoch_parts_s
    assert set(parts) == PARTS and with_extras.epoch_time_source == "measured"
    assert with_extras.epoch_time_s == pytest.approx(sum(parts.values()))
    assert without.timing.epoch_parts_s == {}


def test_older_records_read_without_parts_and_bad_parts_are_refused():
    d = Record(method="fft", status="ok", epoch_time_s=2.0, trainable_params=1, peak_memory_bytes=1).to_dict()
    d["timing"] = {"steps": 3}
    assert Record.from_dict(d).timing.epoch_parts_s == {}
    d["timing"]["epoch_parts_s"] = {"train": 1.0, "test": "slow"}
    with pytest.raises(TpmeError, match="epoch_parts_s.test"):
        Record.from_dict(d)


# --- the estimate ----------------------------------------------------------------------------

def _estimates(proto: str, method: str) -> dict:
    cfg = preset("ci").replace(protocol=proto)
    [rec] = estimate_records(REC, cfg, method, {}, resolve_gpus("h100"), REC.data_shape(cfg))
    return rec


def test_official_estimate_adds_the_parts_to_the_epoch():
    rec = _estimates("official", "fft")
    parts = rec["epoch_parts_s"]
    assert set(parts) == PARTS and all(v > 0 for v in parts.values())
    assert rec["predicted_epoch_time_s"] == pytest.approx(sum(parts.values()))
    assert parts["train"] == pytest.approx(rec["predicted_step_time_s"] * rec["steps_per_epoch"])
    assert parts["checkpoint"] == pytest.approx(rec["checkpoint_bytes"] / CHECKPOINT_WRITE_BYTES_S)
    cached = _estimates("official", "iisan-cached")
    assert set(cached["epoch_parts_s"]) == {"train", "validation", "test"} and "checkpoint_bytes" not in cached


def test_tpme_estimate_is_unchanged():
    rec = _estimates("tpme", "fft")
    assert "epoch_parts_s" not in rec and "checkpoint_bytes" not in rec
    assert rec["predicted_epoch_time_s"] == pytest.approx(rec["predicted_step_time_s"] * rec["steps_per_epoch"])


def test_estimated_checkpoint_bytes_match_the_file_a_run_writes(ci_bundle_path, tmp_path):
    """The state's bytes on the fake model against the real torch.save file (pickle framing
    and the RNG state aside)."""
    rec = run_cell(spec("adapter", "official", ci_bundle_path, tmp_path))
    assert _estimates("official", "adapter")["checkpoint_bytes"] == pytest.approx(rec.timing.checkpoint_bytes, rel=0.05)


def test_estimate_cli_reports_the_parts(capsys):
    assert main(["estimate", "--preset", "ci", "--protocol", "official", "--methods", "fft", "--gpu", "h100", "--json"]) == 0
    import json

    [row] = json.loads(capsys.readouterr().out)
    assert set(row["epoch_parts_s"]) == PARTS
    assert main(["estimate", "--preset", "ci", "--protocol", "official", "--methods", "fft,iisan-cached", "--gpu", "h100"]) == 0
    table = capsys.readouterr().out
    assert all(h in table for h in ("train (s)", "valid (s)", "test (s)", "ckpt (s)"))
    assert main(["estimate", "--preset", "ci", "--protocol", "tpme", "--methods", "fft", "--gpu", "h100"]) == 0
    assert "ckpt (s)" not in capsys.readouterr().out
