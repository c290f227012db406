"""One cell (method x config x repeat), measured inside the current process.

Order: the scenario's training setup (data, model, the method, its one-off prepare timed
apart), warm-up steps, timed steps with memory probes (whole epochs: with the scenario's
quality evaluated between them, outside the timed window), then, on CPU only, a separate
untimed phase that tracks tensor memory, then the protocol's per-epoch extras where it has
them (the official code's validation, test and checkpoint: each timed once, added to the
epoch time part by part). Which process this runs in is the executor's business; the
result is a typed record.
"""
from __future__ import annotations

import json
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from tpme.bench.adapter_size import adapter_bytes
from tpme.bench.convergence import evaluate_after_steps, run_epochs
from tpme.bench.host import HostMonitor, available_cores, cuda_uuid, iso_now
from tpme.bench.probes import TensorMemoryTracker, memory_probes
from tpme.bench.provenance import provenance
from tpme.bench.train import StepTimes, timed_steps
from tpme.datasets.prefetch import Prefetcher
from tpme.device import device_name, resolve_device, synchronize
from tpme.errors import NonFiniteError
from tpme.methods.registry import get_method, load_plugins
from tpme.metrics.stats import LEVEL, median_interval, outlier_steps
from tpme.results.finite import NON_FINITE_FIX, describe, non_finite_fields
from tpme.results.record import Memory, Provenance, Quality, QualityValue, Record, Timing, cell_key
from tpme.scenarios import get_scenario
from tpme.scenarios.base import Evaluator, ExtrasTimes, TrainingSetup, count_params
from tpme.training.batches import tensors


@dataclass
class CellSpec:
    method: str
    config: dict[str, Any]  # the scenario config's to_dict()
    data_path: str  # the prepared data file
    repeat: int = 0
    options: dict[str, str] = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    cache_dir: str = ".tpme-cache"
    command: list[str] = field(default_factory=list)
    estimate: bool = False  # also store the GPU-free estimate of this cell (computed after measuring)
    scenario: str = "recommendation"

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "CellSpec":
        return cls(**json.loads(text))

    @property
    def key(self) -> str:
        return cell_key(self.method, self.options, self.config, self.repeat)

    @property
    def seed(self) -> int:
        """The seed this repeat trains with: the config's seed plus the repeat index."""
        return int(self.config["train"]["seed"]) + self.repeat


def empty_record(spec: CellSpec) -> Record:
    """The record of this cell before (or without) a measurement: identity and config only."""
    train = spec.config.get("train", {})
    return Record(
        method=spec.method, scenario=spec.scenario, cell_key=spec.key, method_options=dict(spec.options), repeat=spec.repeat,
        seed=spec.seed, preset=spec.config.get("preset"), protocol=spec.config.get("protocol", "tpme"), precision=train.get("precision"), config=spec.config,
        provenance=Provenance(timestamp=iso_now(), seed=spec.seed),
    )


def _tracked_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer):
    yield from model.parameters()
    yield from model.buffers()
    yield from (p.grad for p in model.parameters() if p.grad is not None)
    for state in optimizer.state.values():
        yield from (v for v in state.values() if isinstance(v, torch.Tensor))


def _quality(evaluator: Evaluator, evaluation: dict[str, Any]) -> Quality:
    """The test figures of an evaluation, each of the evaluator's metrics named with its direction."""
    test = evaluation.get("test") or {}
    metrics = {m.name: QualityValue(float(test[m.name]), m.higher_is_better, "test") for m in evaluator.metrics if m.name in test}
    return Quality(metrics, evaluation)


def run_cell(spec: CellSpec, on_step=None, workdir: Path | None = None) -> Record:
    """Measure one cell; raises on failure (the worker turns exceptions into statuses).
    `workdir`: the cell's own folder, for files the epoch extras write and remove (None: a
    temporary folder of its own)."""
    record = empty_record(spec)
    scenario = get_scenario(spec.scenario)
    cfg = scenario.config_from_dict(spec.config)
    load_plugins(spec.plugins)
    method = get_method(spec.method, spec.options)
    scenario.check_method(method)
    device = resolve_device(cfg.train.device)
    record.device = str(device)
    record.method_options = method.options_dict()
    if method.label:
        record.label = method.label
    record.provenance = Provenance(**provenance(device, spec.command), timestamp=record.provenance.timestamp, seed=spec.seed)
    cell_cores = 1 if device.type == "cuda" else min(torch.get_num_threads(), available_cores())
    uuid = cuda_uuid(device.index or 0) if device.type == "cuda" else None
    host = HostMonitor(cell_cores, gpu=device.type == "cuda", gpu_uuids=[uuid] if uuid else None)

    setup: TrainingSetup = scenario.build_training(cfg, method, spec.data_path, device, spec.cache_dir, spec.seed)
    model, trainer, loader = setup.model, setup.trainer, setup.loader
    record.data = setup.data_info
    record.prepare_time_s, record.prepare, record.steps_per_epoch, record.execution = setup.prepare_time_s, setup.prepare_info, len(loader), setup.execution
    record.trainable_params, record.total_params = count_params(model)
    record.adapter_bytes = adapter_bytes(model)

    def prefetched(it):
        return Prefetcher(it, depth=cfg.train.prefetch, pin_memory=device.type == "cuda")

    batches = prefetched(loader.forever())
    for _ in range(cfg.train.warmup_steps):
        trainer.step(next(batches))
    synchronize(device)

    probes = memory_probes(device)
    evaluator = setup.evaluator
    times = StepTimes()
    memory: dict[str, Any] = {}
    host.start_window()
    if cfg.train.epochs is not None:
        outcome = run_epochs(trainer, loader, cfg.train.epochs, times, probes, evaluator, cfg.train.early_stop, on_step, prefetched)
        host.stop_window()
        epoch_time, source = sum(outcome.epoch_walls) / len(outcome.epoch_walls), "measured"
        memory, evaluation = outcome.memory, outcome.evaluation
    else:
        for p in probes:
            p.start()
        timed_steps(trainer, batches, cfg.train.steps, times, on_step)
        host.stop_window()
        for p in probes:
            memory.update(p.stop())
        epoch_time, source = None, "extrapolated"
        evaluation = evaluate_after_steps(evaluator, trainer) if evaluator else None
    if evaluator is not None and evaluation:
        record.quality = _quality(evaluator, evaluation)

    timing = times.summary()
    if epoch_time is None:
        epoch_time = timing["step_time_s"]["median"] * len(loader)
    record.epoch_time_s, record.epoch_time_source, record.step_time_s = epoch_time, source, timing["step_time_s"]["median"]
    record.timing = _timing(spec, timing, cfg.train.warmup_steps, epoch_time)
    record.losses = {"first": times.losses[0], "last": times.losses[-1]}

    if device.type == "cuda":
        record.peak_memory_bytes, record.memory_source = memory["peak_allocated_bytes"], "cuda_allocator"
        batch = next(batches)
    else:
        tracker = TensorMemoryTracker()
        with tracker:
            for _ in range(max(cfg.train.memory_steps, 1)):
                batch = next(batches)
                tracker.add_existing(_tracked_tensors(model, trainer.optimizer))
                tracker.add_existing(tensors(batch))
                trainer.step(batch)
        memory["cpu_tensor_peak_bytes"] = tracker.peak
        record.peak_memory_bytes, record.memory_source = tracker.peak, "cpu_tensor_peak"
    batches.close()
    record.memory = Memory(**{k: v for k, v in memory.items() if k in Memory.__dataclass_fields__})
    extras = _epoch_extras(setup, workdir)
    if extras is not None:
        _add_epoch_parts(record, epoch_time, extras)
    if spec.estimate:  # after every measurement: tracking never overlaps timing
        record.estimate = _estimate(spec, scenario, cfg, setup, batch, device)
    record.provenance.host_state = host.finish().to_dict()
    bad = non_finite_fields(record.to_dict()) + [f"losses of step {i + 1}" for i, x in enumerate(times.losses) if not math.isfinite(x)][:3]
    if bad:
        raise NonFiniteError(describe(bad), NON_FINITE_FIX)
    record.status = "ok"
    return record


def _timing(spec: CellSpec, timing: dict[str, Any], warmup_steps: int, epoch_time: float) -> Timing:
    """The step-time summary with the seeded bootstrap interval of the median (and of the epoch
    time, scaled from it) and the outlier steps flagged."""
    steps, median = timing["step_times_s"], timing["step_time_s"]["median"]
    ci = median_interval(steps, key=spec.key)
    epoch_ci = ci.scaled(epoch_time / median) if median > 0 else ci
    return Timing(timing["steps"], warmup_steps, timing["step_time_s"], steps, timing["breakdown_median_s"],
                  median_ci_s=ci.as_list(), epoch_time_ci_s=epoch_ci.as_list(), ci_level=LEVEL, outlier_steps=outlier_steps(steps))


def _epoch_extras(setup: TrainingSetup, workdir: Path | None) -> ExtrasTimes | None:
    """The scenario's per-epoch extras, run once after every measurement of the steps."""
    if setup.epoch_extras is None:
        return None
    if workdir is not None:
        return setup.epoch_extras(workdir)
    with tempfile.TemporaryDirectory(prefix="tpme-cell-") as tmp:
        return setup.epoch_extras(Path(tmp))


def _add_epoch_parts(record: Record, train_s: float, extras: ExtrasTimes) -> None:
    """The epoch as the protocol defines it: training plus each extra part (the paper's epoch
    time). The extras are timed once, so the epoch's interval is the training's, shifted."""
    timing = record.timing
    timing.epoch_parts_s = {"train": train_s, **extras.parts_s}
    timing.checkpoint_bytes = extras.checkpoint_bytes
    added = sum(extras.parts_s.values())
    record.epoch_time_s = train_s + added
    timing.epoch_time_ci_s = [x + added for x in timing.epoch_time_ci_s]


def _estimate(spec: CellSpec, scenario: Any, cfg: Any, setup: TrainingSetup, batch: Any, device: torch.device):
    """The GPU-free estimate for this cell's config and batch shape (the last tracked batch on a CPU)."""
    from tpme.estimate.api import estimate_for_cell
    from tpme.results.record import Estimate

    try:
        raw = estimate_for_cell(scenario, cfg, spec.method, spec.options, setup.data_shape, batch, device.type, device_name(device))
    except Exception as e:  # noqa: BLE001 - the measurement stands without its estimate; the error is recorded
        return Estimate(error=f"{type(e).__name__}: {e}", target="cuda" if device.type == "cuda" else "cpu")
    return Estimate.from_dict(raw)
