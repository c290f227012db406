"""Run configuration: what data, which backbones, how to train, and the named presets.

A `RunConfig` is plain data (JSON round-trip) so that a cell can be re-created in a
fresh process and recorded verbatim in its result.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tpme.errors import TpmeError

PRECISIONS = ("fp32", "fp16", "bf16")
CUDA_GRAPH_MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class DataConfig:
    """Where items and users come from and how sequences are cut."""

    dataset: str = "synthetic:small"  # synthetic[:SIZE] or a directory path
    max_seq_len: int = 10
    text_len: int = 30
    seed: int = 0
    items_file: str | None = None  # explicit items / users files (else found in the directory)
    users_file: str | None = None
    images: str | None = None  # an LMDB store or a folder of <item_id>.jpg|.png (else found)
    missing_images: str = "error"  # error | blank | synthetic
    max_users: int | None = None  # a seeded random subset of the users (before preprocessing)


@dataclass(frozen=True)
class TrainConfig:
    """How a cell trains and what is timed."""

    batch_size: int = 16
    steps: int | None = 8  # timed steps (epoch time extrapolated); None when epochs is set
    epochs: int | None = None  # whole timed epochs (epoch time measured)
    warmup_steps: int = 2
    memory_steps: int = 2  # extra steps tracked for the CPU tensor-level peak (never timed)
    lr: float = 1e-4
    embed_dim: int = 64
    precision: str = "fp32"
    device: str = "auto"
    seed: int = 0
    prefetch: int = 2  # batches prepared ahead in a background thread
    compile: bool = False  # torch.compile the recommender (compilation happens in warm-up)
    cuda_graphs: str = "auto"  # auto: capture the step where the method allows it on CUDA; on: required; off
    eval: bool = False  # HR@10 / NDCG@10: once after timed steps, or after every epoch
    early_stop: int | None = None  # epochs without a better validation HR@10 before stopping


@dataclass(frozen=True)
class RunConfig:
    """Everything a cell needs besides the method."""

    preset: str = "default"
    backbone: str = "small"  # tiny|small|base or TEXT_DIR,IMAGE_DIR
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        return cls(
            preset=d["preset"],
            backbone=d["backbone"],
            data=DataConfig(**d["data"]),
            train=TrainConfig(**d["train"]),
        )

    def replace(self, **changes: Any) -> "RunConfig":
        """Override fields by flat name (`batch_size=32`, `dataset=...`, `backbone=...`)."""
        data = {k: v for k, v in changes.items() if k in _fields(DataConfig)}
        train = {k: v for k, v in changes.items() if k in _fields(TrainConfig)}
        top = {k: v for k, v in changes.items() if k in ("preset", "backbone")}
        unknown = set(changes) - set(data) - set(train) - set(top)
        if unknown:
            raise TpmeError(f"unknown config field(s): {', '.join(sorted(unknown))}")
        cfg = dataclasses.replace(
            self,
            data=dataclasses.replace(self.data, **data),
            train=dataclasses.replace(self.train, **train),
            **top,
        )
        cfg.validate()
        return cfg

    def override(self, **changes: Any) -> "RunConfig":
        """`replace` for command-line values: None means "keep the preset's", and giving one
        of steps / epochs clears the other."""
        given = {k: v for k, v in changes.items() if v is not None}
        if "epochs" in given:
            given["steps"] = None
        elif "steps" in given:
            given["epochs"] = None
        return self.replace(**given)

    def validate(self) -> None:
        t = self.train
        if t.precision not in PRECISIONS:
            raise TpmeError(f"unknown precision {t.precision!r}", f"use one of {', '.join(PRECISIONS)}")
        if t.cuda_graphs not in CUDA_GRAPH_MODES:
            raise TpmeError(f"unknown cuda_graphs mode {t.cuda_graphs!r}", f"use one of {', '.join(CUDA_GRAPH_MODES)}")
        if (t.steps is None) == (t.epochs is None):
            raise TpmeError("give exactly one of steps and epochs")
        for name in ("batch_size", "embed_dim"):
            if getattr(t, name) < 1:
                raise TpmeError(f"{name} must be at least 1")
        if t.steps is not None and t.steps < 1 or t.epochs is not None and t.epochs < 1:
            raise TpmeError("steps and epochs must be at least 1")
        if t.warmup_steps < 0 or t.memory_steps < 0 or t.prefetch < 1:
            raise TpmeError("warmup_steps and memory_steps must be non-negative, prefetch at least 1")
        if self.data.max_seq_len < 1 or self.data.text_len < 3:
            raise TpmeError("max_seq_len must be >= 1 and text_len >= 3")
        kind, _, _ = self.data.dataset.partition(":")
        if kind != "synthetic" and not Path(self.data.dataset).exists():
            raise TpmeError(f"dataset path {self.data.dataset!r} does not exist", "use synthetic[:tiny|small|medium|scientific] or a directory holding an items file and a users file")
        if self.data.missing_images not in ("error", "blank", "synthetic"):
            raise TpmeError(f"unknown missing-image policy {self.data.missing_images!r}", "use error, blank or synthetic")
        if self.data.max_users is not None and self.data.max_users < 1:
            raise TpmeError("max_users must be at least 1")
        if t.early_stop is not None and (t.early_stop < 1 or t.epochs is None):
            raise TpmeError("early_stop needs epochs and a patience of at least 1", "use --epochs N --early-stop PATIENCE")


def _fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


PRESETS: dict[str, RunConfig] = {
    # seconds: the smallest shapes, for smoke tests and CI
    "ci": RunConfig(
        preset="ci",
        backbone="tiny",
        data=DataConfig(dataset="synthetic:tiny", max_seq_len=10, text_len=16),
        train=TrainConfig(batch_size=8, steps=3, warmup_steps=1, memory_steps=1),
    ),
    # the whole registry on 2 CPU cores in a few minutes
    "default": RunConfig(
        preset="default",
        backbone="small",
        data=DataConfig(dataset="synthetic:small", max_seq_len=10, text_len=30),
        train=TrainConfig(batch_size=16, steps=8, warmup_steps=2, memory_steps=1),
    ),
    # DESIGN section 2: BERT-base + ViT-base/16-224, Scientific-sized data, batch 32, fp16
    "paper": RunConfig(
        preset="paper",
        backbone="base",
        data=DataConfig(dataset="synthetic:scientific", max_seq_len=10, text_len=30),
        train=TrainConfig(batch_size=32, steps=30, warmup_steps=5, memory_steps=1, precision="fp16"),
    ),
}


def preset(name: str) -> RunConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise TpmeError(f"unknown preset {name!r}", f"use one of {', '.join(PRESETS)}") from None
