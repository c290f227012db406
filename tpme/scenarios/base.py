"""What a scenario is: the task a method adapts, as one object the harness, the estimator, the
orchestrator and the CLI all ask, so that adding a task touches its own folder only.

A scenario owns its data (generate or read, prepare once per run into a file every cell
loads), the model a method adapts (ONE assembly function, used for training, for the
GPU-free estimate on the meta device and for parameter counts), its training setup and
loss, its quality metrics and reference baselines, and its presets.
"""
from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn

from tpme.errors import TpmeError
from tpme.methods.registry import Method, PreparePass
from tpme.results.quality import QualityMetric
from tpme.results.record import Baseline
from tpme.scenarios.config import ScenarioConfig
from tpme.training.step import Trainer


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) over unique parameters: the whole trained model, as the harness counts."""
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


@dataclass(frozen=True)
class DataShape:
    """What the estimate needs to know of the data: samples per epoch, and the scenario's own sizes."""

    samples: int  # one epoch visits each once (users, sequences)
    sizes: dict[str, int] = field(default_factory=dict)  # e.g. items

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(self.samples / batch_size)


@dataclass
class Assembly:
    """A method applied to the scenario's model: the whole trainable model and the part the method built."""

    model: nn.Module
    part: nn.Module  # what the method returned (an item tower, an adapted decoder): CUDA-graph decisions ask it
    extras: dict[str, Any] = field(default_factory=dict)  # scenario facts (image size, the backbones for a prepare pass)


class Loader(Protocol):
    """Training batches: an epoch in a seeded order, or forever (warm-up and timed steps)."""

    def __len__(self) -> int: ...

    def epoch(self, seed: int) -> Iterator[Any]: ...

    def forever(self) -> Iterator[Any]: ...


class Evaluator(Protocol):
    """Quality on held-out data, outside every timed and memory-probed window."""

    metrics: tuple[QualityMetric, ...]  # what `evaluate` reports per split
    select: QualityMetric  # the validation metric early stopping and the best epoch follow
    info: dict[str, Any]  # how it evaluates (k, masking, ...), for the record

    def evaluate(self, model: nn.Module) -> dict[str, Any]:
        """{"valid": {metric: value}, "test": {metric: value}, "eval_time_s": float, ...}; the model is left in train mode."""
        ...


@dataclass(frozen=True)
class DataParallel:
    """A step wrapped in DistributedDataParallel, as far as its memory depends on it."""

    find_unused_parameters: bool = False  # DDP then keeps its first bucket split and never rebuilds it


@dataclass(frozen=True)
class ExtrasTimes:
    """The seconds of each part of an epoch besides training, each timed once."""

    parts_s: dict[str, float]  # e.g. validation, test, checkpoint
    checkpoint_bytes: int | None = None  # the size of the checkpoint written, where one was


EpochExtras = Callable[[Path], ExtrasTimes]
"""A protocol's per-epoch work besides training (the official code's validation, test and
checkpoint), run once; its argument is a folder of the cell's own for any file it writes
(and removes before it returns)."""


@dataclass(frozen=True)
class ForwardPiece:
    """One forward-only batch of an epoch part, for the estimate: `run(model, inputs)` on the fake
    model (eval mode, no autograd) is one batch; the part runs `repeats` such batches (the last
    one partial: fractional)."""

    part: str  # the epoch part it belongs to (validation, test)
    inputs: Any  # one batch: small index tensors real, large inputs on the meta device
    run: Callable[[nn.Module, Any], Any]
    repeats: float


@dataclass(frozen=True)
class EpochExtrasPlan:
    """What a protocol's epoch does besides training, as the estimate models it."""

    pieces: tuple[ForwardPiece, ...]  # forward-only work per part
    checkpoint: bool  # the model's and the optimizer's state written once per epoch


@dataclass
class TrainingSetup:
    """Everything a cell's loop needs, built by the scenario for one method and config."""

    model: nn.Module
    trainer: Trainer
    loader: Loader
    prepare_info: dict[str, Any]
    prepare_time_s: float
    execution: dict[str, Any]  # how the step runs: CUDA graphs (used or why not), static shapes, optimizer, dtypes
    data_info: dict[str, Any]  # dataset statistics for the record
    data_shape: DataShape
    evaluator: Evaluator | None = None
    epoch_extras: EpochExtras | None = None  # None: an epoch is its training steps alone (tpme's protocol)

    @property
    def device(self) -> torch.device:
        return self.trainer.device


class Scenario:
    """Base class; a scenario module subclasses it and registers an instance (`register_scenario`)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    config_class: ClassVar[type[ScenarioConfig]] = ScenarioConfig
    quality_metrics: ClassVar[tuple[QualityMetric, ...]] = ()
    model_option: ClassVar[str] = "model"  # the top-level config field `--model`/`--backbone` sets
    samples_name: ClassVar[str] = "samples"  # what one epoch visits once: users, sequences
    estimate_preset: ClassVar[str] = "default"  # the preset `tpme estimate` starts from (the task's real scale)

    # configuration
    def presets(self) -> dict[str, ScenarioConfig]:
        raise NotImplementedError

    def preset(self, name: str) -> Any:
        presets = self.presets()
        if name not in presets:
            raise TpmeError(f"unknown preset {name!r} for the {self.name} scenario", f"use one of {', '.join(presets)}")
        return presets[name]

    def config_from_dict(self, d: dict[str, Any]) -> Any:
        return self.config_class.from_dict(d)

    def describe(self, cfg: Any) -> str:
        """One line naming the configuration, for progress messages."""
        return f"preset {cfg.preset}"

    # command line
    cli_dests: ClassVar[tuple[str, ...]] = ()  # the argparse dests of this scenario's own options

    def add_arguments(self, parser: argparse.ArgumentParser, data: bool = True) -> None:
        """This scenario's own options (model, data) on a command that takes `--scenario`;
        `data=False` for commands that never read a dataset (params)."""

    def overrides(self, args: argparse.Namespace) -> dict[str, Any]:
        """Config fields from this scenario's options (None: keep the preset's)."""
        return {}

    def extra_methods(self, args: argparse.Namespace) -> list[str]:
        """Methods this scenario's own options name (causal-lm's `--peft-config FILE`)."""
        return []

    # methods
    def check_method(self, method: Method) -> None:
        """Refuse, with the reason, a method that makes no sense for this scenario."""
        reason = method.unsupported_reason(self.name)
        if reason is not None:
            raise TpmeError(f"method {method.name!r} does not apply to the {self.name} scenario: {reason}", f"`tpme methods --scenario {self.name}` lists the methods that do")

    def preflight(self, cfg: Any, method: Method) -> None:
        """Checks a run makes before it writes anything (the data source, the method on the model);
        each failure a TpmeError. Default: none beyond `check_method`."""

    # data
    def data_key(self, cfg: Any) -> str:
        """Cells whose data configs share this key share one prepared data file."""
        raise NotImplementedError

    def prepare_data(self, cfg: Any, path: Path) -> None:
        """Generate or read, preprocess and tokenise; save to `path` (atomically) for every cell to load."""
        raise NotImplementedError

    def data_info(self, path: Path) -> dict[str, Any]:
        """Statistics of a prepared data file (for messages and records)."""
        raise NotImplementedError

    def baselines(self, path: Path) -> dict[str, Baseline]:
        """References evaluated once per prepared dataset (never TPME-scored)."""
        return {}

    def data_shape(self, cfg: Any) -> DataShape:
        """The data's size for an estimate, without preparing it where possible."""
        raise NotImplementedError

    # model and training
    def assemble(self, cfg: Any, method: Method, data: DataShape | None = None, meta: bool = False) -> Assembly:
        """THE assembly of the model a method adapts (training, estimate and counts all call it).
        meta=True builds shapes only (meta device, no weight init, no weights read)."""
        raise NotImplementedError

    def config_for_method(self, cfg: Any, method: str) -> Any:
        """The config one method runs at (a protocol may give a method its own settings, e.g.
        the official IISAN batch size); every cell, estimate and count asks this."""
        return cfg

    def count(self, cfg: Any, method: Method) -> tuple[int, int]:
        """(trainable, total) parameters of a method, as `tpme params` reports them: the model
        assembled on the meta device, counted as the harness counts."""
        return count_params(self.assemble(cfg, method, meta=True).model)

    def optimizer(self, cfg: Any, model: nn.Module, fused: bool) -> torch.optim.Optimizer:
        """The optimizer the harness trains with (and the estimate builds)."""
        raise NotImplementedError

    def prepare_pass(self, cfg: Any, method: Method, assembly: Assembly) -> PreparePass | None:
        """The device work of the method's one-off `prepare` at this config (see Method.prepare_pass)."""
        return None

    def data_parallel(self, cfg: Any, method: str) -> DataParallel | None:
        """How the step is wrapped in DistributedDataParallel, whose gradient buckets the estimate
        counts; None: not wrapped."""
        return None

    def grad_clip(self, cfg: Any) -> float | None:
        return None

    def autocast_precision(self, cfg: Any) -> str:
        """The precision the step autocasts to (fp32: none); a scenario holding half weights runs without autocast."""
        return cfg.train.precision

    def build_training(self, cfg: Any, method: Method, data_path: Path, device: torch.device, cache_dir: str, seed: int) -> TrainingSetup:
        raise NotImplementedError

    def synthetic_batch(self, cfg: Any, assembly: Assembly) -> Any:
        """The largest training batch of a config (for estimates): index tensors real, large inputs on meta."""
        raise NotImplementedError

    def epoch_extras_plan(self, cfg: Any, method: Method, data: DataShape, assembly: Assembly) -> EpochExtrasPlan | None:
        """The estimate's model of `TrainingSetup.epoch_extras` for this config; None (the default):
        an epoch is its training steps alone."""
        return None
