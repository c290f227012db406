"""The recommendation scenario's run configuration and its presets (DESIGN section 2)."""
from __future__ import annotations

from dataclasses import dataclass, field

from tpme.datasets.config import DataConfig
from tpme.errors import TpmeError
from tpme.models.backbones import BackboneSpec
from tpme.scenarios.config import ScenarioConfig, TrainConfig


PROTOCOLS = ("tpme", "official")


@dataclass(frozen=True)
class RecTrainConfig(TrainConfig):
    embed_dim: int = 64  # e: item and user embedding width
    iisan_batch_size: int | None = None  # official protocol: IISAN's own batch (the official scripts use 64); None: batch_size
    loader_workers: int | None = None  # processes building training batches (official protocol only); None: 4 under official, 0 under tpme


@dataclass(frozen=True)
class RunConfig(ScenarioConfig):
    """Everything a cell needs besides the method."""

    backbone: str = "small"  # tiny|small|base or TEXT_DIR,IMAGE_DIR
    protocol: str = "tpme"  # tpme | official (the official IISAN code's workload, hyperparameters and evaluation; protocol.py)
    data: DataConfig = field(default_factory=DataConfig)
    train: RecTrainConfig = field(default_factory=RecTrainConfig)

    def validate(self) -> None:
        super().validate()
        if self.train.embed_dim < 1:
            raise TpmeError("embed_dim must be at least 1")
        if self.protocol not in PROTOCOLS:
            raise TpmeError(f"unknown protocol {self.protocol!r}", f"use one of {', '.join(PROTOCOLS)}")
        if self.train.iisan_batch_size is not None and self.train.iisan_batch_size < 1:
            raise TpmeError("iisan_batch_size must be at least 1")
        self._validate_loader_workers()
        self.data.validate()
        BackboneSpec.parse(self.backbone)

    def _validate_loader_workers(self) -> None:
        workers = self.train.loader_workers
        if workers is None:
            return
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
            raise TpmeError(f"loader_workers must be a whole number of processes, 0 or more, got {workers!r}",
                            "give --loader-workers 0 (batches built in the main process) or a positive count such as 4 (the official code's)")
        if workers > 0 and self.protocol != "official":
            raise TpmeError(f"loader_workers {workers} needs the official protocol: tpme's protocol prepares batches in one background thread",
                            "add --protocol official, or drop --loader-workers (or give 0)")


PRESETS: dict[str, RunConfig] = {
    # seconds: the smallest shapes, for smoke tests and CI
    "ci": RunConfig(
        preset="ci",
        backbone="tiny",
        data=DataConfig(dataset="synthetic:tiny", max_seq_len=10, text_len=16),
        train=RecTrainConfig(batch_size=8, steps=3, warmup_steps=1, memory_steps=1),
    ),
    # the whole registry on 2 CPU cores in a few minutes
    "default": RunConfig(
        preset="default",
        backbone="small",
        data=DataConfig(dataset="synthetic:small", max_seq_len=10, text_len=30),
        train=RecTrainConfig(batch_size=16, steps=8, warmup_steps=2, memory_steps=1),
    ),
    # DESIGN section 2: BERT-base + ViT-base/16-224, Scientific-sized data, batch 32 (IISAN 64), fp16,
    # under the official code's protocol unless --protocol tpme
    "paper": RunConfig(
        preset="paper",
        backbone="base",
        protocol="official",
        data=DataConfig(dataset="synthetic:scientific", max_seq_len=10, text_len=30),
        train=RecTrainConfig(batch_size=32, steps=30, warmup_steps=5, memory_steps=1, precision="fp16", iisan_batch_size=64),
    ),
}


def preset(name: str) -> RunConfig:
    """A named preset of this scenario."""
    if name not in PRESETS:
        raise TpmeError(f"unknown preset {name!r}", f"use one of {', '.join(PRESETS)}")
    return PRESETS[name]
