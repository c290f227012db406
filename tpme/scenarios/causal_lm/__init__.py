"""Causal language modelling: any transformers decoder fine-tuned on next-token loss.

The model is a named shape (random init) or a local config / model directory; data are
synthetic Markov-chain sequences or a local text file; a method adapts the whole decoder
(`fft`, the built-in adapters, every peft type including prompt learning, or a peft
`adapter_config.json` given with `--peft-config`). Quality: held-out loss and perplexity.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch

from tpme.methods.registry import Method
from tpme.scenarios import register_scenario
from tpme.scenarios.base import Assembly, DataShape, Scenario, TrainingSetup
from tpme.scenarios.causal_lm import arguments, data, peft_file  # noqa: F401 - peft_file registers the peft-config family
from tpme.scenarios.causal_lm.config import PRESETS, LmRunConfig
from tpme.scenarios.causal_lm.data import LmData
from tpme.scenarios.causal_lm.evaluate import METRICS
from tpme.scenarios.causal_lm.model import assemble
from tpme.scenarios.causal_lm.training import build_training, optimizer_for


class CausalLmScenario(Scenario):
    name = "causal-lm"
    description = "causal language modelling: a transformers decoder (named shape or local model) fine-tuned on next-token loss"
    config_class = LmRunConfig
    quality_metrics = METRICS
    model_option = "model"
    samples_name = "sequences"
    estimate_preset = "peft"
    cli_dests = arguments.DESTS

    def presets(self) -> dict[str, LmRunConfig]:
        return PRESETS

    def add_arguments(self, parser: argparse.ArgumentParser, data: bool = True) -> None:
        arguments.add_arguments(parser, data)

    def overrides(self, args: argparse.Namespace) -> dict[str, Any]:
        return arguments.overrides(args)

    def extra_methods(self, args: argparse.Namespace) -> list[str]:
        return arguments.peft_config_methods(args)

    def describe(self, cfg: LmRunConfig) -> str:
        lengths = f"{cfg.data.min_seq_len}-{cfg.data.seq_len}" if cfg.data.min_seq_len else str(cfg.data.seq_len)
        return f"preset {cfg.preset}, model {cfg.model}, {cfg.train.weights_dtype} weights, dataset {cfg.data.dataset}, {lengths} tokens"

    def preflight(self, cfg: LmRunConfig, method: Method) -> None:
        """The data source (file, tokenizer against the vocabulary) and the method on the model's
        shapes (target modules, a prompt-learning config's fit), before a run writes anything."""
        data.check_source(cfg)
        assemble(cfg, method, meta=True)

    def data_key(self, cfg: LmRunConfig) -> str:
        return data.data_key(cfg)

    def prepare_data(self, cfg: LmRunConfig, path: Path) -> None:
        data.build(cfg).save(path)

    def data_info(self, path: Path) -> dict[str, Any]:
        return LmData.load(path).stats()

    def data_shape(self, cfg: LmRunConfig) -> DataShape:
        return data.data_shape(cfg)

    def assemble(self, cfg: LmRunConfig, method: Method, shape: DataShape | None = None, meta: bool = False) -> Assembly:
        return assemble(cfg, method, meta)

    def optimizer(self, cfg: LmRunConfig, model: torch.nn.Module, fused: bool) -> torch.optim.Optimizer:
        return optimizer_for(cfg, model, fused)

    def grad_clip(self, cfg: LmRunConfig) -> float | None:
        return cfg.train.grad_clip

    def autocast_precision(self, cfg: LmRunConfig) -> str:
        return cfg.train.autocast_precision

    def build_training(self, cfg: LmRunConfig, method: Method, data_path: Path, device: torch.device, cache_dir: str, seed: int) -> TrainingSetup:
        return build_training(cfg, method, LmData.load(data_path), device, seed)

    def synthetic_batch(self, cfg: LmRunConfig, assembly: Assembly) -> Any:
        return data.synthetic_batch(cfg)


register_scenario(CausalLmScenario())
