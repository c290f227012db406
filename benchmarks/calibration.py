"""The estimate against peft's published L40S runs: reserved memory and training time, per run.

For every run of the shared folder (`../shared/data/peft-method-comparison`, or --data):
- memory: `predicted_reserved_bytes` of `tpme estimate --peft-experiment` (its batch at
  max_seq_length) against `accelerator_memory_max` (peak `max_memory_reserved()`);
- time: the predicted time of `max_steps` steps at the run's mean tokens per sample
  (`train total tokens` / `train samples` of its last metrics) against `train_time`.
Prints per run predicted, measured and the error, then the median and worst absolute error and
the share within 10 %, with the GPU table's constants (in-sample for the runs they were fitted
to) and leave-one-out (each run predicted by constants fitted without it: out-of-sample).
`--fit` fits the constants to these runs (tpme/estimate/calibration.py) and writes them, with
their provenance, to the GPU table's calibration file (tpme/estimate/calibrated.json).

The fake steps are the slow part (tens of seconds per run on a busy 2-core machine); their
device-independent results are cached in .tpme-cache/calibration/, keyed by the experiment's
files, the mean length, the estimator's source and the library versions, so a refit or a
rerun takes seconds.

    PYTHONPATH=$PWD HF_HUB_OFFLINE=1 python benchmarks/calibration.py [--json] [--fit]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "peft-method-comparison"
CACHE = ROOT / ".tpme-cache" / "calibration"
MODEL_CONFIG = "llama-3.2-3b/config.json"  # the one model of the folder (its README)
GPU = "l40s"
# the estimator's device-independent source: a change there invalidates the cache
ESTIMATOR_SOURCES = ("tpme/estimate", "tpme/scenarios", "tpme/methods", "tpme/training", "tpme/models")
DEVICE_DEPENDENT = {"calibration.py", "gpus.py", "predict.py", "api.py", "calibrated.json"}


@dataclass(frozen=True)
class MeasuredRun:
    label: str
    experiment: Path
    reserved_bytes: int
    train_time_s: float
    mean_tokens: float
    steps: int


def measured_runs(data: Path) -> list[MeasuredRun]:
    """Successful runs of the folder, with what the README says each field means."""
    runs = []
    for path in sorted((data / "results").glob("*.json")):
        doc = json.loads(path.read_text())
        info, train = doc["run_info"], doc["train_info"]
        if train.get("status") != "success":
            print(f"calibration: {path.name} skipped: status {train.get('status')!r}", file=sys.stderr)
            continue
        last = next(m for m in reversed(train["metrics"]) if "train total tokens" in m)
        label = info["experiment_name"]
        runs.append(MeasuredRun(label, data / "experiments" / label, int(train["accelerator_memory_max"]), float(train["train_time"]),
                                last["train total tokens"] / last["train samples"], int(info["train_config"]["max_steps"])))
    return runs


def _source_hash() -> str:
    import peft
    import torch
    import transformers

    h = hashlib.sha256(f"{torch.__version__} {transformers.__version__} {peft.__version__}".encode())
    for folder in ESTIMATOR_SOURCES:
        for f in sorted((ROOT / folder).rglob("*.py")):
            if f.name not in DEVICE_DEPENDENT:
                h.update(f.relative_to(ROOT).as_posix().encode() + f.read_bytes())
    return h.hexdigest()


def _run_key(run: MeasuredRun, model_config: Path, source: str) -> str:
    h = hashlib.sha256(f"{source} {run.mean_tokens!r}".encode() + model_config.read_bytes())
    for f in sorted(run.experiment.glob("*.json")) + [run.experiment.parents[2] / "default_training_params.json"]:
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:24]


def step_features(run: MeasuredRun, model_config: Path, cache: Path, source: str) -> dict[str, Any]:
    """The device-independent estimate of one run (cached): the replayed allocator's peak at the
    longest batch, the ops of a step at the mean length, or the error the estimate raised."""
    key = _run_key(run, model_config, source)
    path = cache / f"{run.label.replace('/', '--')}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        if cached.get("key") == key:
            return cached
    from tpme.estimate.calibration import OpArrays
    from tpme.estimate.experiments import estimate_experiment
    from tpme.scenarios import get_scenario
    from tpme.scenarios.causal_lm.peft_experiment import load_experiment

    scenario = get_scenario("causal-lm")
    t0 = time.perf_counter()
    try:
        est = estimate_experiment(scenario, scenario.preset("peft").replace(model=str(model_config)), load_experiment(run.experiment), run.mean_tokens)
        out = {"key": key, "label": run.label, "replayed_bytes": est.at_max.reserved_bytes, "peak_memory_bytes": est.at_max.memory.peak_bytes,
               "trainable_params": est.at_max.trainable_params, "mean_seq_len": est.at_mean.batch_shapes["input_ids"][1],
               "ops_at_mean": OpArrays.from_cost(est.at_mean.cost).to_dict(), "estimate_s": round(time.perf_counter() - t0, 1)}
    except Exception as e:  # noqa: BLE001 - a method the fake step cannot run is reported, the others calibrate
        out = {"key": key, "label": run.label, "error": f"{type(e).__name__}: {e}"}
    cache.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def _gpu(calibration_values: dict[str, float] | None = None):
    """The L40S of the GPU table, or with `calibration_values` in place of its constants."""
    from dataclasses import replace

    from tpme.estimate.calibration import calibration_with
    from tpme.estimate.gpus import resolve_gpus

    gpu = resolve_gpus(GPU)[0]
    return gpu if calibration_values is None else replace(gpu, calibration=calibration_with(gpu.calibration, calibration_values), calibration_source="fitted now")


def samples(runs: list[MeasuredRun], features: list[dict[str, Any]], gpu) -> tuple[list, list]:
    """(time samples, memory samples) of the runs the estimate could run; memory without the fitted overhead."""
    from dataclasses import replace

    from tpme.estimate.api import reserved_for
    from tpme.estimate.calibration import MemorySample, OpArrays, TimeSample

    bare = replace(gpu, calibration=replace(gpu.calibration, reserved_overhead=0.0))
    ok = [(r, f) for r, f in zip(runs, features) if "error" not in f]
    return ([TimeSample(OpArrays.from_dict(f["ops_at_mean"]), r.steps, r.train_time_s) for r, f in ok],
            [MemorySample(reserved_for(f["replayed_bytes"], bare), r.reserved_bytes) for r, f in ok])


def compare(runs: list[MeasuredRun], features: list[dict[str, Any]], gpu) -> dict[str, Any]:
    """Per run predicted, measured and relative error (GPU table constants, and leave-one-out), then the summaries."""
    from tpme.estimate.calibration import memory_loo, time_loo

    c = gpu.calibration
    times, memories = samples(runs, features, gpu)
    loo_t, loo_m = iter(np.expm1(time_loo(times, gpu))), iter(np.expm1(memory_loo(memories)))
    rows, it_t, it_m = [], iter(times), iter(memories)
    for run, f in zip(runs, features):
        if "error" in f:
            rows.append({"label": run.label, "error": f["error"]})
            continue
        t, m = next(it_t), next(it_m)
        pred_mem = round(m.predicted_bytes * (1 + c.reserved_overhead))
        pred_time = t.ops.step_time_s(gpu, c.compute_efficiency, c.memory_efficiency, c.kernel_overhead_s) * t.steps
        rows.append({"label": run.label, "mean_tokens": round(run.mean_tokens, 1), "trainable_params": f["trainable_params"],
                     "reserved": {"predicted_bytes": pred_mem, "measured_bytes": run.reserved_bytes, "error": pred_mem / run.reserved_bytes - 1, "loo_error": float(next(loo_m))},
                     "time": {"predicted_s": pred_time, "measured_s": run.train_time_s, "error": pred_time / run.train_time_s - 1, "loo_error": float(next(loo_t))}})
    ok = [r for r in rows if "error" not in r]
    summary = {what: {kind: _summary([(r["label"], r[what][kind]) for r in ok]) for kind in ("error", "loo_error")} for what in ("reserved", "time")}
    return {"gpu": gpu.key, "calibration": {k: getattr(c, k) for k in ("compute_efficiency", "memory_efficiency", "kernel_overhead_s", "reserved_overhead", "cublas_workspace_bytes")},
            "calibration_source": gpu.calibration_source, "runs": rows, "not_estimated": [r["label"] for r in rows if "error" in r], "summary": summary}


def _summary(errors: list[tuple[str, float]]) -> dict[str, Any]:
    if not errors:
        return {"n": 0}
    worst = max(errors, key=lambda e: abs(e[1]))
    absolute = [abs(e) for _, e in errors]
    return {"n": len(errors), "median_abs": statistics.median(absolute), "worst_abs": abs(worst[1]), "worst": worst[0],
            "within_10pct": sum(a <= 0.10 for a in absolute) / len(absolute)}


def fit(runs: list[MeasuredRun], features: list[dict[str, Any]], data: Path) -> dict[str, Any]:
    """Fit the L40S constants to the runs and write them with their provenance to the GPU table's file."""
    import subprocess

    from tpme.estimate.calibration import LOSS, ROBUST_SCALE, fit_memory, fit_time
    from tpme.estimate.gpus import CALIBRATED_FILE

    gpu = _gpu()
    times, memories = samples(runs, features, gpu)
    t, m = fit_time(times, gpu), fit_memory(memories)
    readme = (data / "README.md").read_text() if (data / "README.md").is_file() else ""
    commit = next((w.strip("`,.") for w in readme.split() if len(w.strip("`,.")) == 40 and all(ch in "0123456789abcdef" for ch in w.strip("`,."))), "unknown")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip() or "unknown"
    entry = {
        "values": {**t.values, **m.values},
        "provenance": {
            "data": f"peft method_comparison MetaMathQA L40S (huggingface/peft@{commit[:12]})", "runs": len(times),
            "labels": [r.label for r, f in zip(runs, features) if "error" not in f],
            "fit": f"scipy.optimize.least_squares, {LOSS} loss (f_scale {ROBUST_SCALE}) on log(predicted/measured); time: 5,000 steps at each run's mean tokens per sample vs train_time; memory: predicted vs accelerator_memory_max",
            "command": "python benchmarks/calibration.py --fit", "tpme_commit": head, "date": time.strftime("%Y-%m-%d"),
            "converged": {"time": t.converged, "memory": m.converged},
        },
    }
    doc = json.loads(CALIBRATED_FILE.read_text()) if CALIBRATED_FILE.is_file() else {"gpus": {}}
    doc["gpus"][GPU] = entry
    CALIBRATED_FILE.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"calibration: wrote the fitted {GPU} constants to {CALIBRATED_FILE}", file=sys.stderr)
    return entry["values"]


def render(result: dict[str, Any]) -> str:
    pct = lambda e: f"{e * 100:+.1f}%"  # noqa: E731
    gb = lambda n: f"{n / 1e9:.2f}"  # noqa: E731
    lines = [f"{'run':<52} {'reserved GB pred':>16} {'meas':>6} {'err':>7} {'loo':>7}   {'time s pred':>11} {'meas':>6} {'err':>7} {'loo':>7}"]
    for r in result["runs"]:
        if "error" in r:
            lines.append(f"{r['label']:<52} not estimated: {r['error'][:100]}")
            continue
        m, t = r["reserved"], r["time"]
        lines.append(f"{r['label']:<52} {gb(m['predicted_bytes']):>16} {gb(m['measured_bytes']):>6} {pct(m['error']):>7} {pct(m['loo_error']):>7}   "
                     f"{t['predicted_s']:>11.0f} {t['measured_s']:>6.0f} {pct(t['error']):>7} {pct(t['loo_error']):>7}")
    lines.append("")
    missed = result["not_estimated"]
    if missed:
        lines.append(f"not estimated: {len(missed)} of {len(result['runs'])} runs ({', '.join(missed)}); the summaries below are of the other {len(result['runs']) - len(missed)}")
    for what in ("reserved", "time"):
        for kind, name in (("error", "GPU table constants"), ("loo_error", "leave-one-out")):
            s = result["summary"][what][kind]
            if s["n"]:
                lines.append(f"{what:<8} {name:<20} n={s['n']}: median |error| {s['median_abs'] * 100:.1f}%, worst {s['worst_abs'] * 100:.1f}% ({s['worst']}), within 10%: {s['within_10pct'] * 100:.0f}%")
    c = result["calibration"]
    lines.append(f"constants ({result['calibration_source']}): compute_efficiency {c['compute_efficiency']:.3f}, memory_efficiency {c['memory_efficiency']:.3f}, "
                 f"kernel_overhead_s {c['kernel_overhead_s'] * 1e6:.1f} us, reserved_overhead {c['reserved_overhead'] * 100:+.2f}%")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA, help="peft's method_comparison folder in the shared layout (results/, experiments/, default_training_params.json)")
    p.add_argument("--cache", type=Path, default=CACHE, help="where the per-run step estimates are cached")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    p.add_argument("--fit", action="store_true", help="fit the L40S constants to these runs and write them to tpme/estimate/calibrated.json first")
    args = p.parse_args(argv)
    if not (args.data / "results").is_dir():
        print(f"calibration: no results/ folder in {args.data}; give --data DIR (peft's method_comparison layout)", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    runs = measured_runs(args.data)
    source = _source_hash()
    features = []
    for i, run in enumerate(runs):
        print(f"calibration: [{i + 1}/{len(runs)}] {run.label}", file=sys.stderr, flush=True)
        features.append(step_features(run, args.data / MODEL_CONFIG, args.cache, source))
    gpu = _gpu(fit(runs, features, args.data)) if args.fit else _gpu()
    result = compare(runs, features, gpu)
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, indent=1) if args.json else render(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
