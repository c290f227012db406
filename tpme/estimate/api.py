"""Estimates as plain records: per method, per precision, per GPU (what `tpme estimate`
prints and what `tpme run --estimate` stores beside a measurement)."""
from __future__ import annotations

from typing import Any

from tpme.estimate.allocator import round_size, segment_size
from tpme.estimate.estimator import StepEstimate, estimate_step
from tpme.estimate.gpus import Gpu
from tpme.estimate.prepare import PrepareEstimate, estimate_prepare
from tpme.estimate.predict import extras_times_s, fits, runtime_overhead, step_time_s
from tpme.methods.registry import get_method
from tpme.results.record import label
from tpme.scenarios.base import DataShape, Scenario

SOURCE = "estimate"


def step_record(est: StepEstimate) -> dict[str, Any]:
    """The device-independent part: memory by category and work per step."""
    c = est.cost
    return {
        "peak_memory_bytes": est.memory.peak_bytes,
        "predicted_reserved_bytes": est.reserved_bytes,
        "breakdown": est.memory.breakdown,
        "gradient_bucket_bytes": est.gradient_bucket_bytes,  # DDP's copy, inside breakdown["gradients"]
        "flops_per_step": c.flops(),
        "flops": {p: c.flops(p) for p in ("forward", "backward", "optimizer")},
        "bytes_moved_per_step": c.bytes(),
        "kernels_per_step": c.kernels,
        "cuda_graphs": est.graphed,
        "trainable_params": est.trainable_params,
        "total_params": est.total_params,
        "batch": est.batch_shapes,
        "estimate_wall_s": round(est.wall_s, 2),
        "source": SOURCE,
        **({"checkpoint_bytes": est.extras.checkpoint_bytes} if est.extras is not None and est.extras.checkpoint_bytes is not None else {}),
    }


def reserved_on(est: StepEstimate, gpu: Gpu) -> int:
    """`max_memory_reserved()` on that GPU (`reserved_for` the step's replayed allocator)."""
    return reserved_for(est.reserved_bytes, gpu)


def reserved_for(replayed_bytes: int, gpu: Gpu) -> int:
    """The replayed allocator's peak plus cuBLAS's workspace, which PyTorch takes from the same
    caching allocator (one segment of its own, kept), scaled by the GPU's fitted
    `reserved_overhead` (estimate/calibration.py)."""
    return round((replayed_bytes + segment_size(round_size(gpu.calibration.cublas_workspace_bytes))) * (1 + gpu.calibration.reserved_overhead))


def gpu_record(est: StepEstimate, gpu: Gpu, steps: int) -> dict[str, Any]:
    """The part that depends on the GPU: overhead, fit and predicted times."""
    overhead = runtime_overhead(est.memory.peak_bytes, gpu)
    step = step_time_s(est.cost, gpu, est.graph_eager_kernels if est.graphed else None)
    parts = {"train": step * steps, **extras_times_s(est.extras, gpu)} if est.extras is not None else {}
    return {
        "gpu": gpu.key,
        "gpu_name": gpu.name,
        "gpu_memory_bytes": gpu.memory_bytes,
        "overhead_bytes": overhead.total,
        "overhead": {"cuda_context_bytes": overhead.cuda_context_bytes, "cublas_workspace_bytes": overhead.cublas_workspace_bytes, "fragmentation_bytes": overhead.fragmentation_bytes},
        "total_memory_bytes": est.memory.peak_bytes + overhead.total,
        "predicted_reserved_bytes": reserved_on(est, gpu),
        "fits": fits(est.memory.peak_bytes, gpu),
        "predicted_step_time_s": step,
        "steps_per_epoch": steps,
        "predicted_epoch_time_s": sum(parts.values()) if parts else step * steps,
        **({"epoch_parts_s": parts} if parts else {}),
    }


def prepare_record(prep: PrepareEstimate) -> dict[str, Any]:
    return {"peak_memory_bytes": prep.memory.peak_bytes, "breakdown": prep.memory.breakdown, "pass": prep.description}


def prepare_gpu_record(prep: PrepareEstimate, gpu: Gpu) -> dict[str, Any]:
    """The preparation pass on one GPU: its own process's needs (tensor peak + overhead)."""
    total = prep.memory.peak_bytes + runtime_overhead(prep.memory.peak_bytes, gpu).total
    return {"prepare_total_memory_bytes": total, "prepare_predicted_reserved_bytes": reserved_for(prep.reserved_bytes, gpu), "prepare_fits": fits(prep.memory.peak_bytes, gpu)}


def estimate_records(scenario: Scenario, cfg: Any, method: str, options: dict[str, str], gpus: list[Gpu], data: DataShape) -> list[dict[str, Any]]:
    """One record per GPU for one method at `cfg` (the step, and a one-off preparation pass
    where the method has one, estimated once)."""
    m = get_method(method, options)
    scenario.check_method(m)
    cfg = scenario.config_for_method(cfg, method)
    est = estimate_step(scenario, cfg, m, data, target="cuda")
    prep = estimate_prepare(scenario, cfg, m, data, target="cuda")
    base = {"method": method, "label": m.label or label(method, options), "method_options": options, "scenario": scenario.name, "preset": cfg.preset, scenario.model_option: getattr(cfg, scenario.model_option),
            "precision": cfg.train.precision, "batch_size": cfg.train.batch_size, **step_record(est), **({"prepare": prepare_record(prep)} if prep else {})}
    steps = data.steps_per_epoch(cfg.train.batch_size)
    return [{**base, **gpu_record(est, gpu, steps), **(prepare_gpu_record(prep, gpu) if prep else {})} for gpu in gpus]


def estimate_for_cell(scenario: Scenario, cfg: Any, method: str, options: dict[str, str], data: DataShape, batch: Any, device_type: str, device_name: str) -> dict[str, Any]:
    """The estimate stored beside a cell's measurement: same config and batch shape; on a
    CPU cell it models the CPU step (comparable to the tensor peak), on a GPU the GPU
    step, with predicted times when the GPU is in the built-in table."""
    from tpme.estimate.gpus import match_device_name

    target = "cuda" if device_type == "cuda" else "cpu"
    gpu = match_device_name(device_name) if target == "cuda" else None
    est = estimate_step(scenario, cfg, get_method(method, options), data, batch=batch, target=target, epoch_extras=gpu is not None)
    rec = {"target": target, **step_record(est)}
    if gpu is not None:
        rec.update(gpu_record(est, gpu, data.steps_per_epoch(cfg.train.batch_size)))
    return rec
