"""The causal-LM scenario: runs on the tiny decoder, its data, methods refused with reasons,
bad inputs exit 2 with nothing written, and its estimate against the CPU measurement."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tpme.bench.cell import CellSpec, run_cell
from tpme.cli import main
from tpme.errors import TpmeError
from tpme.methods.registry import get_method
from tpme.scenarios import get_scenario
from tpme.scenarios.causal_lm.data import IGNORE, collate, synthetic
from tpme.scenarios.causal_lm.shapes import ModelSpec, build_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
PEFT_DATA = SHARED / "peft-method-comparison"
LLAMA_3B = PEFT_DATA / "llama-3.2-3b" / "config.json"


@pytest.fixture(scope="module")
def lm():
    return get_scenario("causal_lm")


@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    """The issue's done-when command, in this process."""
    out = tmp_path_factory.mktemp("run") / "r"
    argv = ["run", "--scenario", "causal-lm", "--model", "tiny", "--preset", "ci", "--methods", "fft,peft:lora,peft:prefix_tuning",
            "--json", "--executor", "inprocess", "--out", str(out), "--quiet", "--eval"]
    return out, argv


def test_ci_run_gives_ok_records_with_falling_loss(ci_run, capsys):
    out, argv = ci_run
    assert main(argv) == 0
    records = json.loads(capsys.readouterr().out)
    assert [r["method"] for r in records] == ["fft", "peft:lora", "peft:prefix_tuning"]
    for r in records:
        assert r["status"] == "ok" and r["scenario"] == "causal-lm", r
        assert r["losses"]["last"] < r["losses"]["first"], r["losses"]
        q = r["quality"]["metrics"]
        assert q["loss"]["higher_is_better"] is False and q["perplexity"]["value"] == pytest.approx(np.exp(q["loss"]["value"]), rel=1e-6)
        assert r["execution"]["optimizer"].startswith("AdamW") and r["execution"]["grad_clip"] == 1.0 and r["execution"]["autocast"] is None
    assert records[0]["trainable_params"] == records[0]["total_params"] > records[1]["trainable_params"]


def test_reports_score_and_compare_read_causal_lm_runs(ci_run, capsys):
    out, _ = ci_run
    if not (out / "results.jsonl").is_file():
        pytest.skip("needs the ci run of the test above")
    assert main(["report", str(out), "--out", str(out / "again")]) == 0
    assert (out / "again" / "report.md").is_file()
    assert main(["score", str(out), "--json"]) == 0
    assert main(["compare", str(out), str(out)]) == 0
    assert main(["sensitivity", str(out), "--step", "0.25", "--json"]) == 0
    assert "prefix_tuning" in capsys.readouterr().out


def test_sweep_over_sequence_lengths(tmp_path, capsys):
    spec = tmp_path / "lm.yaml"
    spec.write_text("name: lm\nscenario: causal-lm\npreset: ci\nsettings:\n  device: cpu\n  steps: 1\n  warmup_steps: 0\n"
                    "axes:\n  method: [peft:lora]\n  seq_len: [16, 24]\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--executor", "inprocess", "--quiet"]) == 0
    lines = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["config"]["data"]["seq_len"] for r in lines) == [16, 24]
    assert all(r["status"] == "ok" and r["scenario"] == "causal-lm" for r in lines)


def test_bf16_weights_keep_peft_adapters_fp32(lm, tmp_path):
    cfg = lm.preset("ci").replace(precision="bf16", weights_dtype="bf16", steps=1, warmup_steps=0, memory_steps=1)
    path = tmp_path / "d.npz"
    lm.prepare_data(cfg, path)
    rec = run_cell(CellSpec("peft:lora", cfg.to_dict(), str(path), scenario="causal-lm"))
    assert rec.status == "ok" and rec.execution["trainable_dtypes"] == {"float32": rec.trainable_params}
    assert rec.execution["weights_dtype"] == "bf16" and rec.execution["autocast"] is None


def test_synthetic_data_is_deterministic_with_lengths_in_range(lm):
    cfg = lm.preset("ci").replace(seq_len=40, min_seq_len=10, samples=50)
    a, b = synthetic(cfg, 512), synthetic(cfg, 512)
    assert all(np.array_equal(x, y) for x, y in zip(a.splits["train"], b.splits["train"]))
    lengths = [len(s) for s in a.splits["train"]]
    assert min(lengths) >= 10 and max(lengths) <= 40 and len(set(lengths)) > 1
    assert all(0 < int(t) < 512 for s in a.splits["train"] for t in s)
    fixed = synthetic(lm.preset("ci"), 512)
    assert {len(s) for s in fixed.splits["train"]} == {lm.preset("ci").data.seq_len}


def test_padding_is_masked_from_attention_and_loss():
    batch = collate([np.array([5, 6, 7]), np.array([8])], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert batch.attention_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    assert batch.labels.tolist() == [[5, 6, 7], [8, IGNORE, IGNORE]]


def test_methods_that_make_no_sense_are_refused_with_the_reason(lm):
    for name, reason in (("frozen", "nothing to train"), ("iisan", "\\[CLS\\]"), ("iisan-cached", "\\[CLS\\]")):
        with pytest.raises(TpmeError, match=reason):
            lm.check_method(get_method(name))
    with pytest.raises(TpmeError, match="prompt-learning"):
        get_scenario("recommendation").check_method(get_method("peft:prefix_tuning"))
    with pytest.raises(TpmeError, match="no bias terms"):
        lm.assemble(lm.preset("ci"), get_method("bitfit"), meta=True)


@pytest.mark.parametrize("name", ["fft", "lora", "adapter", "peft:lora", "peft:ia3", "peft:prefix_tuning", "peft:prompt_tuning", "peft:p_tuning", "peft:adaption_prompt"])
def test_methods_adapt_the_decoder(lm, name):
    model = lm.assemble(lm.preset("ci"), get_method(name), meta=True).model
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert 0 < trainable <= sum(p.numel() for p in model.parameters())


def test_named_shape_matches_the_published_config():
    if not LLAMA_3B.is_file():
        pytest.skip("../shared/data is not present")
    named = build_model(ModelSpec.parse("llama-3.2-3b"), torch.bfloat16, meta=True)
    local = build_model(ModelSpec.parse(str(LLAMA_3B)), torch.bfloat16, meta=True)
    assert sum(p.numel() for p in named.parameters()) == sum(p.numel() for p in local.parameters()) == 3_212_749_824


def test_params_labels_a_peft_config_by_its_folders(capsys):
    config = PEFT_DATA / "experiments" / "lora" / "llama-3.2-3B-rank32" / "adapter_config.json"
    if not config.is_file():
        pytest.skip("../shared/data is not present")
    assert main(["params", "--scenario", "causal-lm", "--model", "tiny", "--peft-config", str(config), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["label"] == "lora/llama-3.2-3B-rank32" and row["method"].startswith("peft-config:")
    assert 0 < row["trainable_params"] < row["total_params"]


# --- bad input: a clear error, exit 2, nothing written ---------------------------------


def _write(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))
    return path


def _bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    bert = _write(tmp / "bert" / "config.json", {"model_type": "bert", "architectures": ["BertForMaskedLM"], "vocab_size": 100, "hidden_size": 32,
                                                  "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64})
    no_target = _write(tmp / "lora" / "missing" / "adapter_config.json", {"peft_type": "LORA", "task_type": "CAUSAL_LM", "r": 4, "target_modules": ["not_a_module"]})
    prefix = _write(tmp / "prefix" / "for-3b" / "adapter_config.json", {"peft_type": "PREFIX_TUNING", "task_type": "CAUSAL_LM", "num_virtual_tokens": 4,
                                                                       "num_layers": 28, "token_dim": 3072, "num_attention_heads": 24})
    qwen = _write(tmp / "qwen" / "config.json", {"model_type": "qwen2", "vocab_size": 600, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                                                 "num_attention_heads": 2, "num_key_value_heads": 1})
    text = tmp / "data.txt"
    text.write_text("one sample\nanother sample\na third\na fourth one\n")
    tokenizer = SHARED / "bert-base-uncased-tokenizer"
    return {
        "unknown shape": (["--model", "llama-99b"], "unknown model"),
        "encoder-only config": (["--model", str(bert)], "encoder-only"),
        "missing target modules": (["--peft-config", str(no_target)], "not_a_module|target modules"),
        "prompt config that does not fit": (["--peft-config", str(prefix)], "does not fit"),
        "adaption prompt on an unsupported model": (["--model", str(qwen), "--methods", "peft:adaption_prompt"], "adaption_prompt|qwen2"),
        "tokenizer of another vocabulary": (["--dataset", str(text), "--tokenizer", str(tokenizer)], "30522 tokens"),
    }


@pytest.mark.parametrize("case", ["unknown shape", "encoder-only config", "missing target modules", "prompt config that does not fit",
                                  "adaption prompt on an unsupported model", "tokenizer of another vocabulary"])
def test_bad_input_exits_2_with_nothing_written(case, tmp_path, capsys):
    args, message = _bad_inputs(tmp_path / "inputs")[case]
    if case.startswith("tokenizer") and not (SHARED / "bert-base-uncased-tokenizer").is_dir():
        pytest.skip("../shared/data is not present")
    out = tmp_path / "run"
    argv = ["run", "--scenario", "causal-lm", "--preset", "ci", "--executor", "inprocess", "--out", str(out), "--quiet", *args]
    if "--methods" not in args and "--peft-config" not in args:
        argv += ["--methods", "peft:lora"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "error" in err and __import__("re").search(message, err), err
    assert not out.exists()


# --- the estimate of the tiny decoder equals its CPU measurement ------------------------


@pytest.mark.parametrize("weights", ["fp32", "bf16"])
@pytest.mark.parametrize("method", ["fft", "peft:lora", "peft:prefix_tuning", "adapter"])
def test_estimated_peak_equals_cpu_tensor_peak(lm, method, weights, tmp_path):
    """run_cell tracks one step's tensors on the CPU, then estimates the same step with the same
    batch on fake tensors (target cpu); a length distribution makes the batch narrower than seq_len."""
    cfg = lm.preset("ci").replace(batch_size=4, steps=1, warmup_steps=1, memory_steps=1, min_seq_len=8,
                                  weights_dtype=weights, precision="bf16" if weights == "bf16" else "fp32")
    path = tmp_path / "d.npz"
    lm.prepare_data(cfg, path)
    rec = run_cell(CellSpec(method, cfg.to_dict(), str(path), estimate=True, scenario="causal-lm")).to_dict()
    est = rec["estimate"]
    assert rec["memory_source"] == "cpu_tensor_peak" and "error" not in est, est
    assert est["peak_memory_bytes"] == rec["peak_memory_bytes"]
    assert (est["trainable_params"], est["total_params"]) == (rec["trainable_params"], rec["total_params"])
    assert est["predicted_reserved_bytes"] >= est["peak_memory_bytes"]


def test_estimate_cli_on_named_gpus(capsys):
    argv = ["estimate", "--scenario", "causal-lm", "--model", "tiny", "--preset", "ci", "--methods", "fft,peft:lora", "--batch-size", "2",
            "--seq-len", "48", "--precision", "bf16", "--weights-dtype", "bf16", "--gpu", "l40s,h100", "--json"]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["method"], r["gpu"]) for r in rows] == [("fft", "l40s"), ("fft", "h100"), ("peft:lora", "l40s"), ("peft:lora", "h100")]
    for r in rows:
        assert r["status"] == "ok" and r["fits"] and r["batch"]["input_ids"] == [2, 48]
        assert r["predicted_reserved_bytes"] > r["peak_memory_bytes"] and r["predicted_step_time_s"] > 0 and r["flops_per_step"] > 0
    assert rows[0]["predicted_step_time_s"] > rows[1]["predicted_step_time_s"]  # the H100 is faster
