"""A peft experiment folder as a causal-LM run: the config and the method its files describe.

peft's suite trains `model_id` at `dtype` with batches of `batch_size` sequences cut at
`max_seq_length`, `optimizer_type` with `optimizer_kwargs`, gradient-norm clipping at
`grad_norm_clip` (0: none) and gradient checkpointing when `use_gc`. Those become the fields of
an `LmRunConfig`; the adapter config (none: full fine-tuning) becomes the method, labelled
`<method>/<name>` as the suite and `tpme import` label the run.

Optimizers: `AdamW` and `Adam` as the suite builds them, `torch.optim.AdamW(params, **kwargs)`,
which on CUDA is torch's multi-tensor (foreach) implementation, not the fused one tpme uses by
default; peft's `lora+` (AdamW with a larger
learning rate for `lora_B`: same state, same kernels) as AdamW; peft's `lora-fa` as AdamW over
the parameters it trains (it freezes every `lora_A`, as `peft.optimizers.create_lorafa_optimizer`
does before building its AdamW). Anything else is refused with the file to change.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from tpme.errors import TpmeError
from tpme.methods.registry import Method, get_method
from tpme.scenarios.causal_lm.config import LmRunConfig
from tpme.scenarios.causal_lm.peft_experiment import ADAPTER_CONFIG, TRAINING_PARAMS, PeftExperiment
from tpme.scenarios.causal_lm.peft_file import PeftFileMethod

# optimizer_type as the suite names it -> (tpme optimizer, freeze lora_A)
OPTIMIZERS = {"AdamW": ("adamw", False), "Adam": ("adam", False), "lora+": ("adamw", False), "lora-fa": ("adamw", True)}
# weights dtype as the suite names it -> tpme weights_dtype
WEIGHTS = {"bfloat16": "bf16", "float32": "fp32"}


def experiment_overrides(exp: PeftExperiment) -> dict[str, Any]:
    """`LmRunConfig.replace` fields from the experiment's merged training params."""
    opt = exp.optimizer
    if opt.name not in OPTIMIZERS:
        raise TpmeError(f"{exp.label}: optimizer_type {opt.name!r} is not modelled by tpme", f"use one of {', '.join(OPTIMIZERS)} in {_where(exp)}")
    dtype = exp.dtype
    if dtype not in WEIGHTS:
        raise TpmeError(f"{exp.label}: weights in {dtype} are not modelled by tpme", f"set \"dtype\" to one of {', '.join(WEIGHTS)} in {_where(exp)}")
    weights = WEIGHTS[dtype]
    if exp.use_amp and weights == "bf16":
        raise TpmeError(f"{exp.label}: use_amp with bfloat16 weights is not modelled (tpme runs bf16 weights without autocast)", f"set \"use_amp\": false in {_where(exp)}")
    # bf16 weights run without autocast; fp32 weights under bf16 autocast when use_amp, else plain fp32
    precision = "bf16" if weights == "bf16" or exp.use_amp else "fp32"
    fields: dict[str, Any] = {
        "batch_size": exp.batch_size, "seq_len": exp.max_seq_length, "min_seq_len": None, "weights_dtype": weights, "precision": precision,
        "optimizer": OPTIMIZERS[opt.name][0], "optimizer_impl": "foreach", "grad_clip": exp.grad_clip, "gradient_checkpointing": exp.gradient_checkpointing,
        "weight_decay": float(opt.weight_decay if opt.weight_decay is not None else 0.01),  # torch.optim.AdamW's own default when unset
    }
    if opt.lr is not None:
        fields["lr"] = float(opt.lr)
    return fields


def experiment_config(exp: PeftExperiment, base: LmRunConfig) -> LmRunConfig:
    """`base` (a preset with the model chosen) with the experiment's training params applied."""
    return base.replace(**experiment_overrides(exp))


class ExperimentMethod(Method):
    """The method of one experiment folder: its adapter config, or full fine-tuning without one."""

    scenarios = frozenset({"causal-lm"})

    def __init__(self, exp: PeftExperiment):
        self.experiment = exp
        self.inner = get_method("fft", {}) if exp.adapter_config is None else PeftFileMethod(str(exp.path / ADAPTER_CONFIG), {})
        self.name = self.inner.name
        self.label = exp.label
        self.description = f"peft experiment {exp.path}"
        self.freeze_lora_a = OPTIMIZERS.get(exp.optimizer.name, ("", False))[1]
        super().__init__({})

    def options_dict(self) -> dict[str, Any]:
        return {}

    def adapt(self, model: nn.Module) -> nn.Module:
        adapted = self.inner.adapt(model)
        if self.freeze_lora_a:
            frozen = [p.requires_grad_(False) for n, p in adapted.named_parameters() if "lora_A" in n]
            if not frozen:
                raise TpmeError(f"{self.label}: optimizer lora-fa trains no lora_A to freeze", f"use lora-fa only with a LoRA adapter_config ({self.experiment.path})")
        return adapted


def _where(exp: PeftExperiment) -> Path:
    params = exp.path / TRAINING_PARAMS
    return params if params.is_file() else exp.sources[0]
