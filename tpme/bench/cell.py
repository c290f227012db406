"""One cell (method x config x repeat), measured inside the current process.

Order: data, backbones, method (tower), one-off prepare (timed apart), warm-up steps,
timed steps with memory probes (whole epochs: with HR@10 / NDCG@10 evaluated between
them, outside the timed window), then, on CPU only, a separate untimed phase that
tracks tensor memory. The launcher decides which process this runs in.
"""
from __future__ import annotations

import gc
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from tpme.bench.convergence import evaluate_after_steps, run_epochs
from tpme.bench.device import grad_scaler, resolve_device, synchronize
from tpme.bench.evaluate import Evaluator
from tpme.bench.probes import TensorMemoryTracker, memory_probes
from tpme.bench.provenance import provenance
from tpme.bench.record import empty_record
from tpme.bench.train import StepTimes, Trainer, timed_steps
from tpme.config import RunConfig
from tpme.datasets.batching import IMAGE, TEXT, ItemFeatures, TrainLoader
from tpme.datasets.bundle import DataBundle
from tpme.methods.registry import PrepareContext, get_method, load_plugins
from tpme.models.backbones import Backbones, BackboneSpec
from tpme.models.recommender import Recommender


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

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "CellSpec":
        return cls(**json.loads(text))


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) over unique parameters."""
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


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
    torch.manual_seed(cfg.train.seed + spec.repeat)
    record.update(device=str(device), method_options=method.options_dict(), provenance=provenance(device, spec.command))

    bundle = DataBundle.load(spec.data_path)
    record["data"] = bundle.stats()
    backbones = Backbones.build(BackboneSpec.parse(cfg.backbone))
    image_size = backbones.image_size
    tower = method.build_tower(backbones, cfg.train.embed_dim)
    model = Recommender(tower, cfg.train.embed_dim, cfg.data.max_seq_len).to(device)

    pad_id = int(bundle.info.get("pad_id", 0))
    t0 = time.perf_counter()
    prepare_info = method.prepare(
        tower,
        PrepareContext(backbones, bundle, ItemFeatures(bundle, frozenset({TEXT, IMAGE}), image_size, pad_id), device, cfg.train.precision, spec.cache_dir),
    )
    synchronize(device)
    record["prepare_time_s"] = time.perf_counter() - t0
    record["prepare"] = prepare_info
    del backbones
    if not method.uses_backbones_in_training:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    trainable, total = count_params(model)
    record.update(trainable_params=trainable, total_params=total)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=cfg.train.lr)
    trainer = Trainer(model, optimizer, grad_scaler(device, cfg.train.precision), device, cfg.train.precision)
    loader = TrainLoader(bundle, ItemFeatures(bundle, tower.needs, image_size, pad_id), cfg.train.batch_size, seed=cfg.train.seed + spec.repeat)
    record["steps_per_epoch"] = len(loader)
    model.train()

    batches = loader.forever()
    for _ in range(cfg.train.warmup_steps):
        trainer.step(next(batches))
    synchronize(device)

    probes = memory_probes(device)
    evaluator = Evaluator(bundle, loader.features, device, cfg.train.precision) if cfg.train.eval or cfg.train.early_stop else None
    times = StepTimes()
    memory: dict[str, Any] = {}
    if cfg.train.epochs is not None:
        outcome = run_epochs(trainer, loader, cfg.train.epochs, times, probes, evaluator, cfg.train.early_stop, on_step)
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
    else:
        tracker = TensorMemoryTracker()
        with tracker:
            for _ in range(max(cfg.train.memory_steps, 1)):
                batch = next(batches)
                tracker.add_existing(_tracked_tensors(model, optimizer))
                tracker.add_existing(t for t in vars(batch.items).values() if isinstance(t, torch.Tensor))
                tracker.add_existing((batch.seq_index, batch.own, batch.log_pop))
                trainer.step(batch)
                del batch
        memory["cpu_tensor_peak_bytes"] = tracker.peak
        record.update(peak_memory_bytes=tracker.peak, memory_source="cpu_tensor_peak")
    record["memory"] = memory
    record["status"] = "ok"
    return record
