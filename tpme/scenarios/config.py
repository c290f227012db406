"""Run configuration shared by every scenario: how a cell trains and what is timed, and the
mechanics of a scenario's config (flat overrides, JSON round trip, validation).

A scenario's config is a frozen dataclass with top-level fields (preset, the model) and
sections (`data`, `train`) that are dataclasses themselves; its `train` section extends
`TrainConfig`, which is all the harness reads. Configs are plain data (JSON round trip)
so that a cell can be re-created in a fresh process and recorded verbatim in its result.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from tpme.errors import TpmeError

PRECISIONS = ("fp32", "fp16", "bf16")
CUDA_GRAPH_MODES = ("auto", "on", "off")
C = TypeVar("C", bound="ScenarioConfig")


@dataclass(frozen=True)
class TrainConfig:
    """How a cell trains and what is timed (every scenario's `train` section extends it)."""

    batch_size: int = 16
    steps: int | None = 8  # timed steps (epoch time extrapolated); None when epochs is set
    epochs: int | None = None  # whole timed epochs (epoch time measured)
    warmup_steps: int = 2
    memory_steps: int = 2  # extra steps tracked for the CPU tensor-level peak (never timed)
    lr: float = 1e-4
    precision: str = "fp32"
    device: str = "auto"
    seed: int = 0
    prefetch: int = 2  # batches prepared ahead in a background thread
    compile: bool = False  # torch.compile the model (compilation happens in warm-up)
    cuda_graphs: str = "auto"  # auto: capture the step where the method allows it on CUDA; on: required; off
    eval: bool = False  # quality: once after timed steps, or after every epoch
    early_stop: int | None = None  # epochs without a better validation metric before stopping

    def validate(self) -> None:
        if self.precision not in PRECISIONS:
            raise TpmeError(f"unknown precision {self.precision!r}", f"use one of {', '.join(PRECISIONS)}")
        if self.cuda_graphs not in CUDA_GRAPH_MODES:
            raise TpmeError(f"unknown cuda_graphs mode {self.cuda_graphs!r}", f"use one of {', '.join(CUDA_GRAPH_MODES)}")
        if (self.steps is None) == (self.epochs is None):
            raise TpmeError("give exactly one of steps and epochs")
        if self.batch_size < 1:
            raise TpmeError("batch_size must be at least 1")
        if self.steps is not None and self.steps < 1 or self.epochs is not None and self.epochs < 1:
            raise TpmeError("steps and epochs must be at least 1")
        if self.warmup_steps < 0 or self.memory_steps < 0 or self.prefetch < 1:
            raise TpmeError("warmup_steps and memory_steps must be non-negative, prefetch at least 1")
        if not math.isfinite(self.lr) or self.lr <= 0:
            raise TpmeError(f"the learning rate must be a positive number, got {self.lr!r}")
        if self.early_stop is not None and (self.early_stop < 1 or self.epochs is None):
            raise TpmeError("early_stop needs epochs and a patience of at least 1", "use --epochs N --early-stop PATIENCE")


@dataclass(frozen=True)
class ScenarioConfig:
    """Base of a scenario's config: subclasses add top-level fields and the `data`/`train` sections."""

    SECTIONS: ClassVar[tuple[str, ...]] = ("data", "train")
    preset: str = "default"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def section_types(cls) -> dict[str, type]:
        hints = typing.get_type_hints(cls)
        return {name: hints[name] for name in cls.SECTIONS}

    @classmethod
    def top_fields(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)} - set(cls.SECTIONS)

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """Every settable field by its flat name (what `--batch-size`, overrides and sweep specs use)."""
        hints = typing.get_type_hints(cls)
        out = {name: hints[name] for name in cls.top_fields()}
        for section in cls.section_types().values():
            section_hints = typing.get_type_hints(section)
            out.update({f.name: section_hints[f.name] for f in dataclasses.fields(section)})
        return out

    @classmethod
    def from_dict(cls: type[C], d: dict[str, Any]) -> C:
        sections = {name: t(**d[name]) for name, t in cls.section_types().items()}
        return cls(**{k: d[k] for k in cls.top_fields() if k in d}, **sections)

    def replace(self: C, **changes: Any) -> C:
        """Override fields by flat name (`batch_size=32`, `dataset=...`), then validate."""
        top = {k: v for k, v in changes.items() if k in self.top_fields()}
        sections = {}
        claimed = set(top)
        for name, t in self.section_types().items():
            names = {f.name for f in dataclasses.fields(t)}
            given = {k: v for k, v in changes.items() if k in names}
            claimed |= set(given)
            sections[name] = dataclasses.replace(getattr(self, name), **given)
        unknown = set(changes) - claimed
        if unknown:
            raise TpmeError(f"unknown config field(s): {', '.join(sorted(unknown))}", f"known fields: {', '.join(sorted(self.field_types()))}")
        cfg = dataclasses.replace(self, **top, **sections)
        cfg.validate()
        return cfg

    def override(self: C, **changes: Any) -> C:
        """`replace` for command-line values: None means "keep the preset's", and giving one
        of steps / epochs clears the other."""
        given = {k: v for k, v in changes.items() if v is not None}
        if "epochs" in given:
            given["steps"] = None
        elif "steps" in given:
            given["epochs"] = None
        return self.replace(**given)

    def validate(self) -> None:
        """Checks of the generic training settings; scenarios add their own."""
        train: TrainConfig = getattr(self, "train")
        train.validate()
