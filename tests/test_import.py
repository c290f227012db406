"""`tpme import peft-method-comparison`: peft's published runs as records, then score, report,
sensitivity and compare on the imported run directory, in-process through the CLI entry."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tpme.cli import main
from tpme.importers import available_importers, get_importer
from tpme.results.store import load_records

META = {
    "model_info": {"sha": "13afe51"},
    "package_info": {"torch-version": "2.13.0+cu130", "transformers-version": "5.13.1", "peft-version": "0.19.2.dev0", "peft-commit-hash": "d787f51"},
    "system_info": {"system": "Linux", "release": "6.17", "machine": "x86_64", "accelerator": "NVIDIA L40S"},
}


def metamath(name: str, t: float, p: int, m: int, acc: float, forgetting: float, status: str = "success", error: str = "") -> dict[str, Any]:
    """One run file as peft's MetaMathQA suite writes it (the fields tpme reads, with their real names)."""
    final = {"step": 5000, "test accuracy": acc, "train loss": 0.6, "train samples": 20000, "train total tokens": 4_198_051, "forgetting": forgetting}
    return {
        "run_info": {
            "created_at": "2026-07-15T01:25:45+00:00", "total_time": t + 200, "experiment_name": name, "peft_branch": "main",
            "train_config": {"model_id": "meta-llama/Llama-3.2-3B", "dtype": "bfloat16", "max_seq_length": 768, "batch_size": 4, "max_steps": 5000,
                             "query_template": "Question: {query} Think step by step.\nAnswer:", "seed": 0, "optimizer_kwargs": {"lr": 1e-4}},
            "peft_config": None if name.startswith("full-finetuning") else {"peft_type": name.split("/")[0].upper(), "r": 32},
            "error_msg": error,
        },
        "train_info": {
            "accelerator_memory_reserved_avg": m // 2, "accelerator_memory_max": m, "accelerator_memory_reserved_99th": m - 1000, "train_time": t,
            "file_size": 36_714_432, "num_trainable_params": p, "num_total_params": 3_212_749_824 + p, "status": status,
            "metrics": [{"step": 250, "valid accuracy": 0.2, "train loss": 1.0, "train samples": 1000}] + ([final] if status == "success" else []),
        },
        "meta_info": META,
    }


def image_gen(name: str, t: float, p: int, m: int, sim: float, drift: float) -> dict[str, Any]:
    """One run file of peft's image-gen suite."""
    return {
        "run_info": {
            "created_at": "2026-06-09T10:01:51+00:00", "experiment_name": name, "error_msg": "",
            "train_config": {"model_id": "black-forest-labs/FLUX.2-klein-base-4B", "dtype": "bfloat16", "batch_size": 2, "max_steps": 750,
                             "dino_model_id": "facebook/dinov2-base", "seed": 0},
            "peft_config": None,
        },
        "train_info": {"accelerator_memory_max": m, "train_time": t, "num_trainable_params": p, "status": "success",
                       "metrics": [{"step": 750, "test dino_similarity": sim, "drift": drift}]},
        "meta_info": META,
    }


RUNS = {
    "lora--rank32.json": metamath("lora/llama-3.2-3B-rank32", 942.0, 9_175_040, 22_292_725_760, 0.478, 0.050),
    "ia3--lr.json": metamath("ia3/llama-3.2-3B-lr_0.001", 943.8, 286_720, 23_234_347_008, 0.398, 0.050),
    "full-finetuning--lr.json": metamath("full-finetuning/llama-3.2-3B-lr_0.00001", 2147.3, 3_212_749_824, 38_868_615_168, 0.472, 0.030),
    "boft--default.json": metamath("boft/llama-3.2-3B-default", 6925.7, 802_816, 24_691_867_648, 0.343, 0.024),
}


def folder(tmp_path: Path, runs: dict[str, Any], extra: dict[str, str] | None = None) -> Path:
    d = tmp_path / "results"
    d.mkdir()
    for name, data in runs.items():
        (d / name).write_text(json.dumps(data))
    for name, text in (extra or {}).items():
        (d / name).write_text(text)
    return d


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_registry_names_the_source() -> None:
    assert "peft-method-comparison" in available_importers()
    with pytest.raises(Exception, match="unknown source 'nope'"):
        get_importer("nope")


def test_one_record_per_run_with_t_p_m_quality_and_provenance(tmp_path, capsys) -> None:
    src = folder(tmp_path, RUNS, {".gitkeep": "", "README.md": "not a run"})
    code, out, err = run_cli(capsys, "import", "peft-method-comparison", str(src), "--out", str(tmp_path / "run"))
    assert code == 0, err
    records = {r.label: r for r in load_records(tmp_path / "run")}
    assert sorted(records) == sorted(d["run_info"]["experiment_name"] for d in RUNS.values())
    lora = records["lora/llama-3.2-3B-rank32"]
    assert (lora.method, lora.source, lora.scenario, lora.status) == ("lora", "published", "causal-lm", "ok")
    assert (lora.epoch_time_s, lora.trainable_params, lora.peak_memory_bytes) == (942.0, 9_175_040, 22_292_725_760)
    assert lora.epoch_time_source == "published" and "5,000 training steps" in lora.timing.note and lora.timing.steps == 5000
    assert lora.memory_source == "cuda_reserved" and lora.memory.peak_reserved_bytes == 22_292_725_760
    assert "max_memory_reserved" in lora.execution["memory_note"]
    acc, forgetting = lora.quality.metrics["accuracy"], lora.quality.metrics["forgetting"]
    assert (acc.value, acc.higher_is_better, acc.split) == (0.478, True, "test")
    assert (forgetting.value, forgetting.higher_is_better) == (0.050, False)
    assert lora.provenance.device_name == "NVIDIA L40S" and lora.provenance.versions["peft"] == "0.19.2.dev0"
    assert lora.provenance.timestamp == "2026-07-15T01:25:45+00:00" and lora.provenance.extra["source_file"] == "lora--rank32.json"
    assert lora.config["peft"] == {"peft_type": "LORA", "r": 32} and lora.config["train"]["max_steps"] == 5000
    assert records["full-finetuning/llama-3.2-3B-lr_0.00001"].config["peft"] is None
    assert "4 run(s) imported" in err


def test_failed_runs_become_failed_records_with_their_error(tmp_path, capsys) -> None:
    runs = {**RUNS, "oft--oom.json": metamath("oft/llama-3.2-3B-rank32", 10.0, 8_171_520, 2**31, 0, 0, "canceled", "CUDA out of memory. Tried to allocate 2.00 GiB"),
            "vera--stop.json": metamath("vera/llama-3.2-3B-default", 10.0, 129_024, 2**31, 0, 0, "canceled", "manually canceled")}
    code, _, err = run_cli(capsys, "import", "peft-method-comparison", str(folder(tmp_path, runs)), "--out", str(tmp_path / "run"))
    assert code == 0, err
    records = {r.label: r for r in load_records(tmp_path / "run")}
    oom, stopped = records["oft/llama-3.2-3B-rank32"], records["vera/llama-3.2-3B-default"]
    assert (oom.status, oom.epoch_time_s, oom.peak_memory_bytes) == ("oom", None, None) and "CUDA out of memory" in oom.error
    assert stopped.status == "error" and stopped.error == "peft run canceled: manually canceled"
    assert "oft/llama-3.2-3B-rank32: published run oom" in err
    code, out, _ = run_cli(capsys, "score", str(tmp_path / "run"), "--json")
    assert code == 0 and len(json.loads(out)) == len(RUNS)  # failed runs get no TPME


def test_malformed_and_foreign_files_are_named_and_the_rest_imported(tmp_path, capsys) -> None:
    broken = dict(RUNS["ia3--lr.json"], train_info={**RUNS["ia3--lr.json"]["train_info"], "train_time": "fast"})
    other_bench = metamath("x/y", 1.0, 1, 1, 0.1, 0.1)
    del other_bench["run_info"]["train_config"]["query_template"]
    src = folder(tmp_path, {"lora.json": RUNS["lora--rank32.json"], "ia3.json": broken, "other.json": other_bench},
                 {"truncated.json": '{"run_info": {', "list.json": "[1, 2]"})
    code, out, err = run_cli(capsys, "import", "peft-method-comparison", str(src), "--out", str(tmp_path / "run"), "--json")
    assert code == 1
    report = json.loads(out)
    problems = {Path(r["file"]).name: r["problem"] for r in report["refused"]}
    assert problems.keys() == {"ia3.json", "other.json", "truncated.json", "list.json"}
    assert "train_info.train_time must be a non-negative finite number, got 'fast'" in problems["ia3.json"]
    assert "of no benchmark this importer knows" in problems["other.json"]
    assert "not valid JSON" in problems["truncated.json"]
    assert "expected an object with run_info and train_info" in problems["list.json"]
    for name in problems:
        assert f"tpme: refused {src / name}: " in err
    assert [r["label"] for r in report["imported"]] == ["lora/llama-3.2-3B-rank32"]
    assert [r.label for r in load_records(tmp_path / "run")] == ["lora/llama-3.2-3B-rank32"]


def test_nothing_importable_writes_nothing(tmp_path, capsys) -> None:
    src = folder(tmp_path, {}, {"a.json": "{}"})
    code, _, err = run_cli(capsys, "import", "peft-method-comparison", str(src), "--out", str(tmp_path / "run"))
    assert code == 2 and "no file of" in err and not (tmp_path / "run").exists()
    code, _, err = run_cli(capsys, "import", "peft-method-comparison", str(tmp_path / "missing"), "--out", str(tmp_path / "run"))
    assert code == 2 and "does not exist" in err


def test_a_non_empty_run_dir_needs_append_which_skips_runs_already_there(tmp_path, capsys) -> None:
    first = dict(list(RUNS.items())[:2])
    src = folder(tmp_path, first)
    out_dir = tmp_path / "run"
    assert run_cli(capsys, "import", "peft-method-comparison", str(src), "--out", str(out_dir))[0] == 0
    before = (out_dir / "results.jsonl").read_bytes()
    code, _, err = run_cli(capsys, "import", "peft-method-comparison", str(src), "--out", str(out_dir))
    assert code == 2 and "exists and is not empty" in err and "--append" in err
    assert (out_dir / "results.jsonl").read_bytes() == before
    for name, data in RUNS.items():
        (src / name).write_text(json.dumps(data))
    code, out, _ = run_cli(capsys, "import", "peft-method-comparison", str(src), "--out", str(out_dir), "--append", "--json")
    report = json.loads(out)
    assert code == 0 and report["kept"] == 2 and len(report["already_there"]) == 2 and len(report["imported"]) == 2
    assert (out_dir / "results.jsonl").read_bytes().startswith(before)
    assert len(load_records(out_dir)) == len(RUNS)


def test_score_report_sensitivity_and_compare_on_an_imported_run(tmp_path, capsys) -> None:
    run = tmp_path / "run"
    assert run_cli(capsys, "import", "peft-method-comparison", str(folder(tmp_path, RUNS)), "--out", str(run))[0] == 0
    code, out, _ = run_cli(capsys, "score", str(run), "--json")
    scores = {s["method"]: s for s in json.loads(out)}
    assert code == 0 and len(scores) == len(RUNS)
    # the fastest-and-smallest run wins; full fine-tuning (most memory and parameters) is last
    assert scores["lora/llama-3.2-3B-rank32"]["rank"] == 1 and scores["full-finetuning/llama-3.2-3B-lr_0.00001"]["rank"] == len(RUNS)
    code, out, _ = run_cli(capsys, "report", str(run), "--out", str(tmp_path / "report"), "--format", "md,png,json")
    assert code == 0
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| accuracy | forgetting |" in md and "CUDA allocator peak reserved" in md and "as its source published it" in md
    assert "881?" not in md and "942?" not in md  # a published time carries no 'unknown source' mark
    for fig in ("time_memory.png", "effectiveness.png"):
        assert (tmp_path / "report" / fig).is_file()
    code, out, _ = run_cli(capsys, "sensitivity", str(run), "--json")
    assert code == 0 and abs(sum(json.loads(out)["shares"].values()) - 1) < 1e-9
    code, out, _ = run_cli(capsys, "compare", str(run), str(run), "--json", "--fail-on-regression")
    result = json.loads(out)
    assert code == 0 and result["comparable"] and result["regressions"] == 0
    assert {"accuracy", "forgetting", "tpme"} <= {r["metric"] for r in result["rows"]}


def test_image_gen_results_are_read_too(tmp_path, capsys) -> None:
    runs = {"lora.json": image_gen("lora/flux2-klein-rank16", 700.0, 38_341_120, 11_630_804_992, 0.68, 0.27),
            "fft.json": image_gen("full-finetuning/flux2-klein-default", 900.0, 3_876_000_000, 40_000_000_000, 0.70, float("nan"))}
    code, _, err = run_cli(capsys, "import", "peft-method-comparison", str(folder(tmp_path, runs)), "--out", str(tmp_path / "run"))
    assert code == 0, err
    records = {r.label: r for r in load_records(tmp_path / "run")}
    lora, fft = records["lora/flux2-klein-rank16"], records["full-finetuning/flux2-klein-default"]
    assert lora.scenario == "text-to-image" and "750 training steps (batch 2)" in lora.timing.note
    assert {k: (q.value, q.higher_is_better) for k, q in lora.quality.metrics.items()} == {"dino_similarity": (0.68, True), "drift": (0.27, False)}
    assert "drift" not in fft.quality.metrics  # peft writes NaN: not measured for full fine-tuning
    assert fft.quality.evaluation["metrics"][0]["drift"] is None
    assert "training only" in lora.execution["memory_note"]


def test_the_shared_published_runs(shared_data, tmp_path, capsys) -> None:
    """Every shared run file imports, and a record holds exactly what its file says."""
    src = shared_data / "peft-method-comparison" / "results"
    files = sorted(src.glob("*.json"))
    code, out, err = run_cli(capsys, "import", "peft-method-comparison", str(src), "--out", str(tmp_path / "run"), "--json")
    assert code == 0, err
    assert len(json.loads(out)["imported"]) == len(files)
    data = json.loads(files[0].read_text())
    rec = next(r for r in load_records(tmp_path / "run") if r.label == data["run_info"]["experiment_name"])
    info = data["train_info"]
    assert (rec.epoch_time_s, rec.trainable_params, rec.peak_memory_bytes) == (info["train_time"], info["num_trainable_params"], info["accelerator_memory_max"])
    assert rec.quality_value("accuracy") == info["metrics"][-1]["test accuracy"]
    assert rec.provenance.device_name == data["meta_info"]["system_info"]["accelerator"]
    code, out, _ = run_cli(capsys, "score", str(tmp_path / "run"), "--json")
    assert code == 0 and len(json.loads(out)) == len(files)


def test_a_single_file_imports(tmp_path, capsys) -> None:
    src = folder(tmp_path, {"lora.json": RUNS["lora--rank32.json"]})
    code, _, err = run_cli(capsys, "import", "peft-method-comparison", str(src / "lora.json"), "--out", str(tmp_path / "run"))
    assert code == 0, err
    assert [r.label for r in load_records(tmp_path / "run")] == ["lora/llama-3.2-3B-rank32"]


def test_written_records_are_strict_json(tmp_path, capsys) -> None:
    """peft's NaN never reaches results.jsonl: any JSON reader can read it line by line."""
    runs = {"fft.json": image_gen("full-finetuning/flux2-klein-default", 900.0, 3, 4, 0.7, float("nan"))}
    assert run_cli(capsys, "import", "peft-method-comparison", str(folder(tmp_path, runs)), "--out", str(tmp_path / "run"))[0] == 0
    for line in (tmp_path / "run" / "results.jsonl").read_text().splitlines():
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
