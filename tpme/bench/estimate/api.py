"""Estimates as plain records: per method, per precision, per GPU (what `tpme estimate`
prints and what `tpme run --estimate` stores beside a measurement)."""
from __future__ import annotations

from typing import Any

from tpme.bench.estimate.estimator import StepEstimate, estimate_step
from tpme.bench.estimate.fake_model import DataShape
from tpme.bench.estimate.gpus import Gpu
from tpme.bench.estimate.predict import fits, runtime_overhead, step_time_s, steps_per_epoch
from tpme.config import RunConfig
from tpme.datasets.batching import TrainBatch
from tpme.methods.registry import get_method

SOURCE = "estimate"


def data_shape(cfg: RunConfig) -> DataShape:
    """Users and items after preprocessing: generated for synthetic data (no titles,
    images or tokeniser needed), read for a dataset directory."""
    kind, _, size = cfg.data.dataset.partition(":")
    if kind == "synthetic":
        from tpme.datasets.preprocess import preprocess
        from tpme.datasets.synthetic import SyntheticCatalog, SyntheticSpec, generate_sequences

        spec = SyntheticSpec.named(size or "small", cfg.data.seed)
        pre = preprocess(generate_sequences(spec, SyntheticCatalog(spec)), cfg.data.max_seq_len)
        return DataShape(len(pre.sequences), len(pre.item_keys))
    from tpme.datasets.bundle import build_bundle
    from tpme.models.backbones import BackboneSpec, text_config

    spec = BackboneSpec.parse(cfg.backbone)
    bundle = build_bundle(cfg.data, spec.tokenizer_dir, text_config(spec).vocab_size)
    return DataShape(bundle.n_users, bundle.n_items)


def step_record(est: StepEstimate) -> dict[str, Any]:
    """The device-independent part: memory by category and work per step."""
    c = est.cost
    return {
        "peak_memory_bytes": est.memory.peak_bytes,
        "breakdown": est.memory.breakdown,
        "flops_per_step": c.flops(),
        "flops": {p: c.flops(p) for p in ("forward", "backward", "optimizer")},
        "bytes_moved_per_step": c.bytes(),
        "kernels_per_step": c.kernels,
        "cuda_graphs": est.graphed,
        "trainable_params": est.trainable_params,
        "total_params": est.total_params,
        "batch": {"users": est.batch_users, "items": est.batch_items},
        "estimate_wall_s": round(est.wall_s, 2),
        "source": SOURCE,
    }


def gpu_record(est: StepEstimate, gpu: Gpu, n_users: int, batch_size: int) -> dict[str, Any]:
    """The part that depends on the GPU: overhead, fit and predicted times."""
    overhead = runtime_overhead(est.memory.peak_bytes, gpu)
    step = step_time_s(est.cost, gpu, est.graph_eager_kernels if est.graphed else None)
    steps = steps_per_epoch(n_users, batch_size)
    return {
        "gpu": gpu.key,
        "gpu_name": gpu.name,
        "gpu_memory_bytes": gpu.memory_bytes,
        "overhead_bytes": overhead.total,
        "overhead": {"cuda_context_bytes": overhead.cuda_context_bytes, "cublas_workspace_bytes": overhead.cublas_workspace_bytes, "fragmentation_bytes": overhead.fragmentation_bytes},
        "total_memory_bytes": est.memory.peak_bytes + overhead.total,
        "fits": fits(est.memory.peak_bytes, gpu),
        "predicted_step_time_s": step,
        "steps_per_epoch": steps,
        "predicted_epoch_time_s": step * steps,
    }


def estimate_records(cfg: RunConfig, method: str, options: dict[str, str], gpus: list[Gpu], data: DataShape) -> list[dict[str, Any]]:
    """One record per GPU for one method at `cfg` (the step is estimated once)."""
    est = estimate_step(cfg, get_method(method, options), data, target="cuda")
    base = {"method": method, "method_options": options, "preset": cfg.preset, "backbone": cfg.backbone, "precision": cfg.train.precision, "batch_size": cfg.train.batch_size, **step_record(est)}
    return [{**base, **gpu_record(est, gpu, data.n_users, cfg.train.batch_size)} for gpu in gpus]


def estimate_for_cell(cfg: RunConfig, method: str, options: dict[str, str], data: DataShape, batch: TrainBatch, device_type: str, device_name: str) -> dict[str, Any]:
    """The estimate stored beside a cell's measurement: same config and batch shape; on a
    CPU cell it models the CPU step (comparable to the tensor peak), on a GPU the GPU
    step, with predicted times when the GPU is in the built-in table."""
    from tpme.bench.estimate.gpus import match_device_name

    target = "cuda" if device_type == "cuda" else "cpu"
    est = estimate_step(cfg, get_method(method, options), data, batch=batch, target=target)
    rec = {"target": target, **step_record(est)}
    gpu = match_device_name(device_name) if target == "cuda" else None
    if gpu is not None:
        rec.update(gpu_record(est, gpu, data.n_users, cfg.train.batch_size))
    return rec
