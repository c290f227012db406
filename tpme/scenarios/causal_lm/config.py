"""The causal-LM scenario's run configuration and its presets.

`weights_dtype` is the dtype the model's weights are held in: `fp32` trains under the
precision's autocast (mixed precision); `bf16` holds the weights in bf16 and runs without
autocast, as peft's method-comparison suite does (its adapters stay fp32 through peft's
`autocast_adapter_dtype`). Optimizer: AdamW with weight decay, gradient-norm clipping.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from tpme.errors import TpmeError
from tpme.scenarios.causal_lm.shapes import ModelSpec, model_config
from tpme.scenarios.config import ScenarioConfig, TrainConfig
from tpme.training.optim import OPTIMIZERS

WEIGHT_DTYPES = ("fp32", "bf16")
OPTIMIZER_IMPLS = ("fused", "foreach")


@dataclass(frozen=True)
class LmDataConfig:
    """Synthetic sequences (`dataset = synthetic`) or a local JSONL / text file."""

    dataset: str = "synthetic"  # synthetic, or a .jsonl / .txt file
    tokenizer: str | None = None  # a tokenizer directory for a file (default: the model directory's)
    text_field: str = "text"  # the JSONL field holding a sample's text
    seq_len: int = 64  # the longest sequence, in tokens (longer samples are truncated)
    min_seq_len: int | None = None  # synthetic: lengths uniform in [min_seq_len, seq_len]; None: every sequence seq_len long
    samples: int = 256  # synthetic training sequences (one epoch visits each once)
    eval_samples: int = 32  # held-out sequences per split (valid, test)
    seed: int = 0

    def validate(self) -> None:
        if self.seq_len < 2:
            raise TpmeError(f"seq_len must be at least 2 tokens, got {self.seq_len}")
        if self.min_seq_len is not None and not 2 <= self.min_seq_len <= self.seq_len:
            raise TpmeError(f"min_seq_len must be in [2, seq_len={self.seq_len}], got {self.min_seq_len}", "use --min-seq-len between 2 and --seq-len")
        if self.samples < 1 or self.eval_samples < 1:
            raise TpmeError("samples and eval_samples must be at least 1")


@dataclass(frozen=True)
class LmTrainConfig(TrainConfig):
    weights_dtype: str = "fp32"  # fp32 (autocast at `precision`) or bf16 (no autocast; needs precision bf16)
    optimizer: str = "adamw"
    weight_decay: float = 0.1
    grad_clip: float | None = 1.0  # max gradient norm; None: no clipping
    gradient_checkpointing: bool = False
    optimizer_impl: str = "fused"  # on CUDA: fused (tpme's default) or foreach (torch's default, which peft's suite gets)

    def validate(self) -> None:
        super().validate()
        if self.weights_dtype not in WEIGHT_DTYPES:
            raise TpmeError(f"unknown weights dtype {self.weights_dtype!r}", f"use one of {', '.join(WEIGHT_DTYPES)}")
        if self.weights_dtype == "bf16" and self.precision != "bf16":
            raise TpmeError(f"bf16 weights run without autocast, so precision must be bf16, got {self.precision}", "use --precision bf16 with --weights-dtype bf16, or --weights-dtype fp32")
        if self.optimizer_impl not in OPTIMIZER_IMPLS:
            raise TpmeError(f"unknown optimizer implementation {self.optimizer_impl!r}", f"use one of {', '.join(OPTIMIZER_IMPLS)}")
        if self.optimizer not in OPTIMIZERS:
            raise TpmeError(f"unknown optimizer {self.optimizer!r}", f"use one of {', '.join(OPTIMIZERS)}")
        if self.weight_decay < 0 or (self.grad_clip is not None and not self.grad_clip > 0):
            raise TpmeError("weight_decay must be non-negative and grad_clip positive (or None)")

    @property
    def autocast_precision(self) -> str:
        """The autocast the step runs under: none (fp32) when the weights already hold the precision."""
        return "fp32" if self.weights_dtype != "fp32" else self.precision


@dataclass(frozen=True)
class LmRunConfig(ScenarioConfig):
    model: str = "tiny"
    data: LmDataConfig = field(default_factory=LmDataConfig)
    train: LmTrainConfig = field(default_factory=LmTrainConfig)

    def validate(self) -> None:
        super().validate()
        self.data.validate()
        model_config(ModelSpec.parse(self.model))  # an unknown shape or a config that is no decoder fails here


PRESETS: dict[str, LmRunConfig] = {
    # seconds on a CPU: the tiny shape, short sequences
    "ci": LmRunConfig(
        preset="ci", model="tiny",
        data=LmDataConfig(seq_len=32, samples=64, eval_samples=16),
        train=LmTrainConfig(batch_size=8, steps=6, warmup_steps=1, memory_steps=1, lr=3e-3),
    ),
    # minutes on a CPU: the tiny shape, a length distribution
    "default": LmRunConfig(
        preset="default", model="tiny",
        data=LmDataConfig(seq_len=128, min_seq_len=32, samples=512, eval_samples=64),
        train=LmTrainConfig(batch_size=8, steps=16, warmup_steps=2, memory_steps=1, lr=1e-3),
    ),
    # peft's method-comparison suite: Llama-3.2-3B, bf16 weights without autocast, batch 4 x up to 768 tokens, AdamW lr 1e-4 wd 0.1, clip 1.0
    "peft": LmRunConfig(
        preset="peft", model="llama-3.2-3b",
        data=LmDataConfig(seq_len=768, min_seq_len=64, samples=20000, eval_samples=50),
        train=LmTrainConfig(batch_size=4, steps=20, warmup_steps=3, memory_steps=1, lr=1e-4, precision="bf16", weights_dtype="bf16"),
    ),
}
