"""peft's method_comparison suite (huggingface/peft, method_comparison/): one JSON per run,
`<method>--<experiment>.json`, with `run_info` (experiment name, train and peft configs),
`train_info` (status, train_time, accelerator_memory_max, num_trainable_params, metrics)
and `meta_info` (versions, GPU). Two benchmarks write that format and both are read:

- MetaMathQA: Llama fine-tuned on MetaMathQA for a fixed step budget; quality is the GSM8K
  test accuracy (higher is better) and `forgetting`, the rise of the mean per-token loss on
  Wikipedia text after training (lower is better).
- image-gen: DreamBooth-style FLUX.2 fine-tuning; quality is the DINOv2 cosine similarity of
  test images (higher is better) and `drift`, (1 - cosine similarity) / 2 between base and
  adapted images of unrelated prompts (lower is better; NaN, so absent, for full fine-tuning).

T is peft's `train_time`: the seconds of the whole step budget with evaluation subtracted,
not an epoch; M is `accelerator_memory_max`, peak reserved memory (see MEMORY_NOTES).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tpme.importers.registry import Importer, Refused, register_importer
from tpme.results.record import Provenance, Quality, QualityValue, Record, Timing, cell_key

STATUSES = ("success", "failed", "canceled")
PRECISIONS = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}
PACKAGES = ("torch", "transformers", "peft", "datasets", "diffusers", "bitsandbytes")


@dataclass(frozen=True)
class QualitySource:
    key: str  # the key in peft's last metrics entry
    name: str  # the tpme metric name
    higher_is_better: bool
    split: str


@dataclass(frozen=True)
class Benchmark:
    """One of peft's benchmarks: how to recognise its files and what their figures mean."""

    name: str
    marker: str  # a train_config key only this benchmark writes
    scenario: str
    quality: tuple[QualitySource, ...]
    memory_note: str


BENCHMARKS = (
    Benchmark(
        "MetaMathQA", "query_template", "causal-lm",
        (QualitySource("test accuracy", "accuracy", True, "test"), QualitySource("forgetting", "forgetting", False, "wikipedia")),
        "torch.cuda.max_memory_reserved() at the end of the run minus its value after a 1x1 Linear was moved to the device: "
        "weights and the allocator's cached blocks (emptied every 10 steps), test generation at the training batch size included, CUDA context excluded",
    ),
    Benchmark(
        "image-gen", "dino_model_id", "text-to-image",
        (QualitySource("test dino_similarity", "dino_similarity", True, "test"), QualitySource("drift", "drift", False, "drift prompts")),
        "torch.cuda.max_memory_reserved() over training only (evaluation, which loads DINOv2, excluded), minus its value at start",
    ),
)


def _obj(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    v = data.get(key)
    if not isinstance(v, dict):
        raise Refused(f"{where}.{key} is missing or not a JSON object")
    return v


def _number(data: dict[str, Any], key: str, where: str, integer: bool = False, required: bool = True) -> Any:
    v = data.get(key)
    if v is None and not required:
        return None
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 and (not integer or float(v).is_integer())
    if not ok:
        want = "a non-negative integer" if integer else "a non-negative finite number"
        raise Refused(f"{where}.{key} must be {want}, got {v!r:.60}" if key in data else f"{where}.{key} is missing")
    return int(v) if integer else float(v)


def _text(data: dict[str, Any], key: str, where: str) -> str:
    v = data.get(key)
    if not isinstance(v, str) or not v:
        raise Refused(f"{where}.{key} must be a non-empty string, got {v!r:.60}")
    return v


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def json_safe(value: Any) -> Any:
    """The value with NaN and infinities (which peft writes, e.g. drift of full fine-tuning) as null: records are strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_safe(v) for v in value]
    return value


def benchmark_of(train_config: dict[str, Any]) -> Benchmark:
    for b in BENCHMARKS:
        if b.marker in train_config:
            return b
    known = ", ".join(f"{b.name} (train_config.{b.marker})" for b in BENCHMARKS)
    raise Refused(f"run_info.train_config is of no benchmark this importer knows: {known}")


def quality(benchmark: Benchmark, metrics: list[Any]) -> Quality:
    """The benchmark's final metrics (the last entry naming each), NaN (not measured) left out."""
    found: dict[str, QualityValue] = {}
    for q in benchmark.quality:
        for entry in reversed(metrics):
            if isinstance(entry, dict) and q.key in entry:
                v = entry[q.key]
                if isinstance(v, bool) or not isinstance(v, (int, float)):
                    raise Refused(f"train_info.metrics: {q.key!r} must be a number, got {v!r:.60}")
                if math.isfinite(v):
                    found[q.name] = QualityValue(float(v), q.higher_is_better, q.split)
                break
    return Quality(found, {"benchmark": benchmark.name, "metrics": json_safe(metrics)})


def provenance(meta: dict[str, Any], run_info: dict[str, Any], path: Path) -> Provenance:
    packages = meta.get("package_info") if isinstance(meta.get("package_info"), dict) else {}
    system = meta.get("system_info") if isinstance(meta.get("system_info"), dict) else {}
    versions = {p: packages[f"{p}-version"] for p in PACKAGES if isinstance(packages.get(f"{p}-version"), str)}
    if isinstance(packages.get("peft-commit-hash"), str):
        versions["peft_commit"] = packages["peft-commit-hash"]
    gpu = system.get("accelerator")
    platform = " ".join(str(system[k]) for k in ("system", "release", "machine") if system.get(k)) or None
    extra = json_safe({"source_file": path.name, "peft_branch": run_info.get("peft_branch"), "model_info": meta.get("model_info"), "dataset_info": meta.get("dataset_info")})
    return Provenance(
        versions=versions, device={"type": "cuda", "name": gpu} if isinstance(gpu, str) else {},
        platform=platform, timestamp=run_info.get("created_at") if isinstance(run_info.get("created_at"), str) else None,
        extra=_drop_none(extra),
    )


def _failure(status: str, message: str) -> tuple[str, str]:
    """peft files an out-of-memory run as canceled with torch's message; tpme calls it oom."""
    kind = "oom" if "out of memory" in message.lower() else "error"
    return kind, f"peft run {status}: {message or '(no message)'}"


@register_importer
class PeftMethodComparison(Importer):
    name = "peft-method-comparison"
    description = "peft's method_comparison results (MetaMathQA/results or image-gen/results): one record per run file"

    def read_file(self, path: Path) -> Record:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise Refused(f"not valid JSON: {e}") from None
        if not isinstance(data, dict) or not {"run_info", "train_info"} <= set(data):
            raise Refused("not a peft method_comparison result: expected an object with run_info and train_info")
        return self.record(data, path)

    def record(self, data: dict[str, Any], path: Path) -> Record:
        run_info, train_info = _obj(data, "run_info", "file"), _obj(data, "train_info", "file")
        meta = data.get("meta_info") if isinstance(data.get("meta_info"), dict) else {}
        experiment = _text(run_info, "experiment_name", "run_info")
        method = experiment.split("/", 1)[0]
        train_config = _obj(run_info, "train_config", "run_info")
        peft_config = run_info.get("peft_config") if isinstance(run_info.get("peft_config"), dict) else None  # full fine-tuning has none
        bench = benchmark_of(train_config)
        status = _text(train_info, "status", "train_info")
        if status not in STATUSES:
            raise Refused(f"train_info.status {status!r} is not one of {', '.join(STATUSES)}")
        metrics = train_info.get("metrics", [])
        if not isinstance(metrics, list):
            raise Refused("train_info.metrics must be a list")
        steps = _number(train_config, "max_steps", "run_info.train_config", integer=True)
        batch = _number(train_config, "batch_size", "run_info.train_config", integer=True, required=False)
        config = json_safe({"benchmark": bench.name, "train": train_config, "peft": peft_config})
        ok = status == "success"
        rec = Record(
            method=method, label=experiment, source="published", scenario=bench.scenario,
            cell_key=cell_key(method, {}, {"importer": self.name, "experiment": experiment, "created_at": run_info.get("created_at"), **config}, 0),
            seed=_number(train_config, "seed", "run_info.train_config", integer=True, required=False),
            trainable_params=_number(train_info, "num_trainable_params", "train_info", integer=True, required=ok),
            total_params=_number(train_info, "num_total_params", "train_info", integer=True, required=False),
            device="cuda", precision=PRECISIONS.get(str(train_config.get("dtype"))), config=config,
            provenance=provenance(meta, run_info, path),
            execution=_drop_none({
                "benchmark": bench.name, "max_steps": steps, "batch_size": batch, "memory_note": bench.memory_note,
                "reserved_after_step_mean_bytes": _number(train_info, "accelerator_memory_reserved_avg", "train_info", required=False),
                "reserved_after_step_p99_bytes": _number(train_info, "accelerator_memory_reserved_99th", "train_info", required=False),
                "checkpoint_bytes": _number(train_info, "file_size", "train_info", integer=True, required=False),
                "total_time_s": _number(run_info, "total_time", "run_info", required=False),
            }),
        )
        if not ok:  # a canceled run's time and memory cover part of the budget: not T or M
            rec.status, rec.error = _failure(status, str(run_info.get("error_msg") or ""))
            return rec
        rec.status = "ok"
        rec.epoch_time_s, rec.epoch_time_source = _number(train_info, "train_time", "train_info"), "published"
        rec.timing = Timing(steps=steps, note=f"peft's train_time: seconds of the fixed budget of {steps:,} training steps"
                            + (f" (batch {batch})" if batch else "") + ", evaluation time subtracted; a step budget, not an epoch")
        rec.peak_memory_bytes = _number(train_info, "accelerator_memory_max", "train_info", integer=True)
        rec.memory_source, rec.memory.peak_reserved_bytes = "cuda_reserved", rec.peak_memory_bytes
        rec.quality = quality(bench, metrics)
        return rec
