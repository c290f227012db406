"""Hand-built result records (schema tpme.result/2) for report, sensitivity and compare tests:
known figures, no training, a complete ci-preset config."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from tpme.results.record import Baseline, Estimate, Memory, Provenance, Quality, QualityValue, Record, Timing, cell_key
from tpme.results.store import append_record
from tpme.scenarios.recommendation.config import preset

CONFIG = preset("ci").to_dict()


def record(
    method: str, t: float, p: int, m: float, *, repeat: int = 0, options: dict[str, str] | None = None, status: str = "ok",
    error: str | None = None, hr: float | None = None, ndcg: float | None = None, device: str = "CPU (x86_64, 2 threads)",
    source: str = "extrapolated", estimate: dict[str, Any] | None = None, config: dict[str, Any] | None = None,
    execution: dict[str, Any] | None = None,
) -> Record:
    """One record with epoch time t (s), p trainable parameters, peak memory m (bytes)."""
    options = options or {}
    config = json.loads(json.dumps(config or CONFIG))
    ok = status == "ok"
    steps = [t / 8 * f for f in (0.9, 1.0, 1.1, 1.05)]
    quality = {k: QualityValue(v, True, "test") for k, v in (("hr@10", hr), ("ndcg@10", ndcg)) if v is not None}
    return Record(
        method=method, status=status, cell_key=cell_key(method, options, config, repeat), method_options=options, error=error, repeat=repeat,
        seed=config["train"]["seed"] + repeat, epoch_time_s=t if ok else None, epoch_time_source=source if ok else None, step_time_s=t / 8 if ok else None,
        steps_per_epoch=8, trainable_params=p if ok else None, total_params=500_000 if ok else None, peak_memory_bytes=int(m) if ok else None,
        memory_source="cpu_tensor_peak" if ok else None, prepare_time_s=0.0, device="cpu", precision="fp32", preset=config["preset"], config=config,
        provenance=Provenance(
            versions={"python": "3.11.7", "tpme": "0.1.0", "torch": "2.13.0+cpu"}, device={"type": "cpu", "name": device},
            git_commit="abc123", command=["tpme", "run", "--preset", "ci"], host="test", platform="Linux-6.1-x86_64-with-glibc2.36", timestamp="2026-01-01T00:00:00Z",
            seed=config["train"]["seed"] + repeat, host_state={"busy": False, "reasons": []},
        ),
        timing=Timing(steps=4, warmup_steps=1, stats=_stats(steps) if ok else {}, step_times_s=steps if ok else [],
                      breakdown_median_s={"data": t / 80, "forward": t / 32, "backward": t / 16, "optimizer": t / 40} if ok else {},
                      median_ci_s=[t / 8 * 0.95, t / 8 * 1.08] if ok else [], epoch_time_ci_s=[t * 0.95, t * 1.08] if ok else [], ci_level=0.95 if ok else None),
        memory=Memory(cpu_tensor_peak_bytes=int(m)) if ok else Memory(),
        quality=Quality(quality, _evaluation(hr, ndcg) if quality else {}), estimate=None if estimate is None else Estimate.from_dict(estimate),
        execution=execution or EXECUTION, data=dict(DATA), losses={"first": 3.7, "last": 3.1} if ok else {},
        axes={"method": method, **options}, attempt=1,
        baselines={"popularity": Baseline("popularity", {"hr@10": QualityValue(0.2, True, "test"), "ndcg@10": QualityValue(0.09, True, "test")}, {"k": 10})},
    )


EXECUTION = {"optimizer": "Adam (single-tensor)", "static_shapes": False,
             "cuda_graphs": {"mode": "auto", "used": False, "reason": "CUDA graphs need a CUDA device; this cell runs on cpu", "capture_s": None}}
DATA = {"name": "synthetic:tiny", "users": 64, "items": 120, "interactions": 392, "pad_id": 0, "tokenizer": "wordpiece trained on item titles", "tokenizer_vocab": 319}


def _stats(xs: list[float]) -> dict[str, float]:
    s = sorted(xs)
    mean = sum(s) / len(s)
    return {"median": (s[1] + s[2]) / 2, "mean": mean, "min": s[0], "max": s[-1], "p10": s[0], "p90": s[-1], "std": (sum((x - mean) ** 2 for x in s) / len(s)) ** 0.5}


def _evaluation(hr: float | None, ndcg: float | None) -> dict[str, Any]:
    figures = {k: v for k, v in (("hr@10", hr), ("ndcg@10", ndcg)) if v is not None}
    return {"mode": "after-timed-steps", "k": 10, "masking": "history items other than the target are masked; ties count half", "eval_time_s": 0.5,
            "valid": {**figures, "users": 64}, "test": {**figures, "users": 64}}


def replaced(rec: Record, **changes: Any) -> Record:
    return dataclasses.replace(rec, **changes)


def write_jsonl(path: Path, records: list[Record]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    for r in records:
        append_record(path, r)
    return path


def zoo(hr: bool = True, failed: bool = True) -> list[Record]:
    """A paper-like set: fft slow and big, PEFT methods in between, iisan-cached cheapest."""
    mib = 2**20
    specs = [
        ("fft", 44.0, 428_416, 47 * mib, 0.061),
        ("adapter", 36.0, 160_000, 38 * mib, 0.060),
        ("lora", 38.0, 130_000, 37 * mib, 0.059),
        ("iisan", 6.0, 140_000, 6 * mib, 0.062),
        ("iisan-cached", 2.2, 140_000, 3 * mib, 0.062),
        ("frozen", 5.0, 116_800, 4 * mib, 0.035),
    ]
    out = []
    for method, t, p, m, h in specs:
        est = {"peak_memory_bytes": int(m * 1.02), "breakdown": {"parameters": int(m * 0.2), "buffers": int(m * 0.05), "gradients": int(m * 0.1),
                                                                 "optimizer_state": int(m * 0.2), "activations": int(m * 0.4), "batch": int(m * 0.05)}}
        for rep, f in enumerate((1.0, 1.03)):
            out.append(record(method, t * f, p, m, repeat=rep, hr=h if hr else None, ndcg=h / 2 if hr else None, estimate=est))
    if failed:
        out.append(record("bitfit", 0, 0, 0, status="oom", error="Traceback (most recent call last):\n  ...\ntorch.OutOfMemoryError: CUDA out of memory"))
    return out


def dump(records: list[Record]) -> str:
    return "".join(json.dumps(r.to_dict()) + "\n" for r in records)
