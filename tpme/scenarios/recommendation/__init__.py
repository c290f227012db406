"""The paper's task: multimodal sequential recommendation (DESIGN section 2).

An item has a title (BERT) and an image (ViT); a method builds the item tower from the two
backbones, the SASRec user encoder and the in-batch softmax loss are shared. Quality: full
ranking HR@10 and NDCG@10; reference: the popularity ranking.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch

from tpme.datasets.batching import IMAGE, TEXT, ItemFeatures
from tpme.datasets.bundle import DataBundle
from tpme.methods.registry import Method, PrepareContext, PreparePass
from tpme.results.record import Baseline
from tpme.scenarios import register_scenario
from tpme.scenarios.base import Assembly, DataParallel, DataShape, EpochExtrasPlan, Scenario, TrainingSetup
from tpme.scenarios.recommendation import arguments, data, epoch_extras, protocol
from tpme.scenarios.recommendation.config import PRESETS, RunConfig
from tpme.scenarios.recommendation.evaluate import METRICS, popularity_baseline
from tpme.scenarios.recommendation.model import assemble
from tpme.scenarios.recommendation.training import build_training, optimizer_for


class Recommendation(Scenario):
    name = "recommendation"
    description = "multimodal sequential recommendation (the IISAN paper's task): BERT + ViT item tower, SASRec user encoder"
    config_class = RunConfig
    quality_metrics = METRICS
    model_option = "backbone"
    samples_name = "users"
    estimate_preset = "paper"

    cli_dests = arguments.DESTS

    def presets(self) -> dict[str, RunConfig]:
        return PRESETS

    def add_arguments(self, parser: argparse.ArgumentParser, data: bool = True) -> None:
        arguments.add_arguments(parser, data)

    def overrides(self, args: argparse.Namespace) -> dict[str, Any]:
        return arguments.overrides(args)

    def describe(self, cfg: RunConfig) -> str:
        return f"preset {cfg.preset}, backbone {cfg.backbone}, dataset {cfg.data.dataset}, protocol {cfg.protocol}"

    def data_key(self, cfg: RunConfig) -> str:
        return data.data_key(cfg)

    def prepare_data(self, cfg: RunConfig, path: Path) -> None:
        data.build(cfg).save(path)

    def data_info(self, path: Path) -> dict[str, Any]:
        return DataBundle.load(path).stats()

    def baselines(self, path: Path) -> dict[str, Baseline]:
        return {"popularity": popularity_baseline(DataBundle.load(path))}

    def data_shape(self, cfg: RunConfig) -> DataShape:
        return data.data_shape(cfg)

    def assemble(self, cfg: RunConfig, method: Method, shape: DataShape | None = None, meta: bool = False) -> Assembly:
        return assemble(cfg, method, shape.sizes.get("items") if shape else None, meta)

    def config_for_method(self, cfg: RunConfig, method: str) -> RunConfig:
        return protocol.config_for_method(cfg, method)

    def prepare_pass(self, cfg: RunConfig, method: Method, assembly: Assembly) -> PreparePass | None:
        return method.prepare_pass(assembly.part, assembly.extras["backbones"], cfg.data.text_len, cfg.train.precision)

    def data_parallel(self, cfg: RunConfig, method: str) -> DataParallel | None:
        """The official code wraps the model in DDP even on one GPU."""
        return DataParallel(protocol.finds_unused_parameters(method)) if protocol.is_official(cfg) else None

    def optimizer(self, cfg: RunConfig, model: torch.nn.Module, fused: bool) -> torch.optim.Optimizer:
        return optimizer_for(cfg, model, fused)

    def build_training(self, cfg: RunConfig, method: Method, data_path: Path, device: torch.device, cache_dir: str, seed: int) -> TrainingSetup:
        return build_training(cfg, method, DataBundle.load(data_path), device, cache_dir, seed)

    def synthetic_batch(self, cfg: RunConfig, assembly: Assembly) -> Any:
        return data.synthetic_batch(cfg, assembly.extras["image_size"], assembly.part.needs, assembly.part.state_shapes())

    def epoch_extras_plan(self, cfg: RunConfig, method: Method, shape: DataShape, assembly: Assembly) -> EpochExtrasPlan | None:
        """Under the official protocol an epoch also validates, tests and saves a checkpoint (epoch_extras.py)."""
        if not protocol.is_official(cfg):
            return None
        return epoch_extras.plan(cfg, method, shape, assembly.extras["image_size"], assembly.part.needs, assembly.part.state_shapes())

    def prepare_method(self, cfg: RunConfig, method: Method, device: torch.device, cache_dir: str, progress: bool) -> dict[str, Any]:
        """A method's one-off `prepare` alone (what `tpme cache build` runs), seeded and built as a
        cell's first repeat builds it, so that what it makes is what `tpme run` finds."""
        self.check_method(method)
        bundle = data.build(cfg)
        torch.manual_seed(cfg.train.seed)
        assembly = assemble(cfg, method)
        features = ItemFeatures(bundle, frozenset({TEXT, IMAGE}), assembly.extras["image_size"], int(bundle.info.get("pad_id", 0)))
        t0 = time.perf_counter()
        facts = method.prepare(assembly.part, PrepareContext(assembly.extras["backbones"], bundle, features, device, cfg.train.precision, cache_dir, progress))
        return {**facts, "prepare_time_s": time.perf_counter() - t0}


register_scenario(Recommendation())
