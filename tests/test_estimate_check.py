"""benchmarks/estimate_check.py: an estimate is held against a measurement only when both
are of the same GPU and settings, and its errors are predicted / measured - 1."""
from __future__ import annotations

import json

import pytest

from benchmarks.estimate_check import compare, gpu_key, main
from tpme.errors import TpmeError
from tpme.results.record import Memory, Provenance, Record
from tpme.results.store import append_record


def _record(method: str, device: str = "cuda:0", name: str = "NVIDIA H200", seq_len: int = 768, status: str = "ok") -> Record:
    return Record(method, status=status, scenario="causal-lm", device=device, precision="bf16", preset="peft", step_time_s=0.1, epoch_time_s=6.4, trainable_params=10, peak_memory_bytes=1000,
                  memory=Memory(peak_allocated_bytes=1000, peak_reserved_bytes=1200), provenance=Provenance(device={"type": device, "name": name}),
                  config={"preset": "peft", "model": "llama-3.2-1b", "data": {"seq_len": seq_len}, "train": {"batch_size": 4}})


def _estimate(method: str, gpu: str = "h200") -> dict:
    return {"method": method, "scenario": "causal-lm", "preset": "peft", "model": "llama-3.2-1b", "precision": "bf16", "batch_size": 4,
            "batch": {"input_ids": [4, 768]}, "peak_memory_bytes": 1100, "predicted_reserved_bytes": 1200, "predicted_step_time_s": 0.08,
            "gpu": gpu, "gpu_name": "NVIDIA H200 SXM 141GB", "status": "ok"}


def _files(tmp_path, records: list[Record], estimates: list[dict]):
    results, est = tmp_path / "results.jsonl", tmp_path / "estimate.json"
    for r in records:
        append_record(results, r)
    est.write_text(json.dumps(estimates))
    return results, est


def test_same_gpu_and_settings_are_compared_with_relative_errors(tmp_path):
    doc = compare(*_files(tmp_path, [_record("fft"), _record("peft:lora")], [_estimate("fft"), _estimate("peft:lora")]))
    assert [p["method"] for p in doc["pairs"]] == ["fft", "peft:lora"]
    fft = doc["pairs"][0]
    assert fft["comparable"] and fft["reason"] == ""
    assert fft["figures"]["peak_memory_bytes"]["error"] == pytest.approx(0.1)
    assert fft["figures"]["peak_reserved_bytes"]["error"] == pytest.approx(0.0)
    assert fft["figures"]["step_time_s"]["error"] == pytest.approx(-0.2)
    assert doc["unpaired_methods"] == []


@pytest.mark.parametrize("record, why", [
    (_record("fft", device="cpu", name="CPU (x86_64, 2 threads)"), "measured on CPU"),
    (_record("fft", name="NVIDIA H100 80GB HBM3"), "estimated for NVIDIA H200"),
    (_record("fft", seq_len=32), "seq_len 768 vs 32"),
    (_record("fft", status="oom"), "did not finish: oom"),
])
def test_another_device_settings_or_a_failed_cell_is_not_comparable(tmp_path, record, why):
    doc = compare(*_files(tmp_path, [record], [_estimate("fft")]))
    (pair,) = doc["pairs"]
    assert not pair["comparable"] and why in pair["reason"]


def test_methods_on_one_side_only_are_named(tmp_path):
    doc = compare(*_files(tmp_path, [_record("fft")], [_estimate("fft"), _estimate("peft:lora")]))
    assert doc["unpaired_methods"] == ["peft:lora"]


def test_exit_codes_and_bad_estimate_file(tmp_path, capsys):
    results, est = _files(tmp_path, [_record("fft")], [_estimate("fft")])
    assert main(["compare", "--results", str(results), "--estimate", str(est), "--out", str(tmp_path / "c.json")]) == 0
    assert json.loads((tmp_path / "c.json").read_text())["pairs"][0]["comparable"]
    est.write_text("{not json")
    assert main(["compare", "--results", str(results), "--estimate", str(est)]) == 2
    assert "tpme estimate --json" in capsys.readouterr().err


def test_gpu_key_without_cuda_needs_a_fallback(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_key("h100") == "h100"
    with pytest.raises(TpmeError, match="no CUDA device"):
        gpu_key(None)


def test_gpu_key_maps_the_device_name(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H200")
    assert gpu_key(None) == "h200"
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H100 80GB HBM3")
    assert gpu_key(None) == "h100"
