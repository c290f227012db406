"""One cell (method x config x repeat), measured inside the current process.

Order: data, backbones, method (tower), one-off prepare (timed apart), warm-up steps,
timed steps with memory probes (whole epochs: with HR@10 / NDCG@10 evaluated between
them, outside the timed window), then, on CPU only, a separate untimed phase that
tracks tensor memory. The launcher decides which process this runs in.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from tpme.bench.convergence import evaluate_after_steps, run_epochs
from tpme.bench.device import resolve_device, synchronize
from tpme.bench.evaluate import Evaluator
from tpme.bench.probes import TensorMemoryTracker, memory_probes
from tpme.bench.provenance import provenance
from tpme.bench.record import empty_record
from tpme.bench.setup import build_training, count_params
from tpme.bench.train import StepTimes, timed_steps
from tpme.config import RunConfig
from tpme.datasets.batching import TrainBatch
from tpme.datasets.bundle import DataBundle
from tpme.datasets.prefetch import Prefetcher
from tpme.methods.registry import get_method, load_plugins


@dataclass
class CellSpec:
    method: str
    config: dict[str, Any]  # RunConfig.to_dict()
    data_path: str  # a saved DataBundle
    repeat: int = 0
    options: dict[str, str] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    cache_dir: str = ".tpme-cache"
    command: list[str] = field(default_factory=list)
    estimate: bool = False  # also store the GPU-free estimate of this cell (computed after measuring)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "CellSpec":
        return cls(**json.loads(text))


def _tracked_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer):
    yield from model.parameters()
    yield from model.buffers()
    yield from (p.grad for p in model.parameters() if p.grad is not None)
    for state in optimizer.state.values():
        yield from (v for v in state.values() if isinstance(v, torch.Tensor))


def run_cell(spec: CellSpec, on_step=None) -> dict[str, Any]:
    """Measure one cell; raises on failure (the worker turns exceptions into statuses)."""
    cfg = RunConfig.from_dict(spec.config)
    record = empty_record(spec.method, spec.options, spec.config, spec.repeat)
    load_plugins(spec.plugins)
    method = get_method(spec.method, spec.options)
    device = resolve_device(cfg.train.device)
    record.update(device=str(device), method_options=method.options_dict(), provenance=provenance(device, spec.command))

    bundle = DataBundle.load(spec.data_path)
    record["data"] = bundle.stats()
    setup = build_training(cfg, method, bundle, device, spec.cache_dir, seed=cfg.train.seed + spec.repeat)
    model, trainer, loader = setup.model, setup.trainer, setup.loader
    optimizer = trainer.optimizer
    record.update(prepare_time_s=setup.prepare_time_s, prepare=setup.prepare_info, steps_per_epoch=len(loader), execution=setup.execution)
    trainable, total = count_params(model)
    record.update(trainable_params=trainable, total_params=total)

    def prefetched(it):
        return Prefetcher(it, depth=cfg.train.prefetch, pin_memory=device.type == "cuda")

    batches = prefetched(loader.forever())
    for _ in range(cfg.train.warmup_steps):
        trainer.step(next(batches))
    synchronize(device)

    probes = memory_probes(device)
    evaluator = Evaluator(bundle, loader.features, device, cfg.train.precision) if cfg.train.eval or cfg.train.early_stop else None
    times = StepTimes()
    memory: dict[str, Any] = {}
    if cfg.train.epochs is not None:
        outcome = run_epochs(trainer, loader, cfg.train.epochs, times, probes, evaluator, cfg.train.early_stop, on_step, prefetched)
        epoch_time, source = sum(outcome.epoch_walls) / len(outcome.epoch_walls), "measured"
        memory, evaluation = outcome.memory, outcome.evaluation
    else:
        for p in probes:
            p.start()
        timed_steps(trainer, batches, cfg.train.steps, times, on_step)
        for p in probes:
            memory.update(p.stop())
        epoch_time, source = None, "extrapolated"
        evaluation = evaluate_after_steps(evaluator, trainer) if evaluator else None
    record["evaluation"] = evaluation
    if evaluation:
        record.update({"hr@10": evaluation["test"]["hr@10"], "ndcg@10": evaluation["test"]["ndcg@10"]})

    timing = times.summary()
    if epoch_time is None:
        epoch_time = timing["step_time_s"]["median"] * len(loader)
    record.update(epoch_time_s=epoch_time, epoch_time_source=source, step_time_s=timing["step_time_s"]["median"], timing={**timing, "warmup_steps": cfg.train.warmup_steps})
    record["losses"] = {"first": times.losses[0], "last": times.losses[-1]}

    if device.type == "cuda":
        record.update(peak_memory_bytes=memory["peak_allocated_bytes"], memory_source="cuda_allocator")
        batch = next(batches)
    else:
        tracker = TensorMemoryTracker()
        with tracker:
            for _ in range(max(cfg.train.memory_steps, 1)):
                batch = next(batches)
                tracker.add_existing(_tracked_tensors(model, optimizer))
                tracker.add_existing(t for t in vars(batch.items).values() if isinstance(t, torch.Tensor))
                tracker.add_existing((batch.seq_index, batch.own, batch.log_pop))
                trainer.step(batch)
        memory["cpu_tensor_peak_bytes"] = tracker.peak
        record.update(peak_memory_bytes=tracker.peak, memory_source="cpu_tensor_peak")
    batches.close()
    record["memory"] = memory
    if spec.estimate:  # after every measurement: tracking never overlaps timing
        record["estimate"] = _estimate(spec, cfg, bundle, batch, device)
    record["status"] = "ok"
    return record


def _estimate(spec: CellSpec, cfg: RunConfig, bundle: DataBundle, batch: TrainBatch, device: torch.device) -> dict[str, Any]:
    """The GPU-free estimate for this cell's config and batch shape (the last tracked batch on a CPU)."""
    from tpme.bench.device import device_name
    from tpme.bench.estimate.api import estimate_for_cell
    from tpme.bench.estimate.fake_model import DataShape

    try:
        return estimate_for_cell(cfg, spec.method, spec.options, DataShape(bundle.n_users, bundle.n_items), batch, device.type, device_name(device))
    except Exception as e:  # noqa: BLE001 - the measurement stands without its estimate; the error is recorded
        return {"source": "estimate", "error": f"{type(e).__name__}: {e}"}
