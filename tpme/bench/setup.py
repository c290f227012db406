"""Build everything a training loop needs for one method on one config: backbones, the
method's tower, the recommender, its one-off preparation, optimizer and data loader.

Shared by the harness (bench.cell), the benchmarks and the tests, so that what is
benchmarked is exactly what is measured.
"""
from __future__ import annotations

import gc
import time
from dataclasses import dataclass
from typing import Any

import torch

from tpme.bench.device import grad_scaler, synchronize
from tpme.bench.graphs import decide, prepare_graphs
from tpme.bench.train import Trainer
from tpme.config import RunConfig
from tpme.datasets.batching import IMAGE, TEXT, ItemFeatures, TrainLoader
from tpme.datasets.bundle import DataBundle
from tpme.methods.registry import Method, PrepareContext
from tpme.models.backbones import Backbones, BackboneSpec
from tpme.models.recommender import Recommender


@dataclass
class TrainingSetup:
    method: Method
    model: Recommender
    trainer: Trainer
    loader: TrainLoader
    device: torch.device
    image_size: int
    prepare_info: dict[str, Any]
    prepare_time_s: float
    execution: dict[str, Any]  # how the step runs: CUDA graphs (used or why not), static shapes, optimizer


def count_params(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) over unique parameters."""
    params = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def build_training(cfg: RunConfig, method: Method, bundle: DataBundle, device: torch.device, cache_dir: str = ".tpme-cache", seed: int = 0) -> TrainingSetup:
    torch.manual_seed(seed)
    backbones = Backbones.build(BackboneSpec.parse(cfg.backbone))
    image_size = backbones.image_size
    tower = method.build_tower(backbones, cfg.train.embed_dim)
    model = Recommender(tower, cfg.train.embed_dim, cfg.data.max_seq_len).to(device)
    pad_id = int(bundle.info.get("pad_id", 0))

    t0 = time.perf_counter()
    all_features = ItemFeatures(bundle, frozenset({TEXT, IMAGE}), image_size, pad_id)
    prepare_info = method.prepare(tower, PrepareContext(backbones, bundle, all_features, device, cfg.train.precision, cache_dir))
    synchronize(device)
    prepare_time = time.perf_counter() - t0
    del backbones, all_features
    if not method.uses_backbones_in_training:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    # fused Adam on CUDA: 2 kernels per step (the multi-tensor default launches several)
    fused = device.type == "cuda"
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=cfg.train.lr, fused=fused)
    graphs = decide(cfg.train.cuda_graphs, method, tower, device, cfg.train.compile)
    if cfg.train.compile:
        model.compile(dynamic=True)
    loader = TrainLoader(bundle, ItemFeatures(bundle, tower.needs, image_size, pad_id), cfg.train.batch_size, seed=seed, static=graphs.used)
    model.train()
    graphed_loss = prepare_graphs(graphs, model, next(loader.epoch(0)), device, cfg.train.precision) if graphs.used else None
    trainer = Trainer(model, optimizer, grad_scaler(device, cfg.train.precision), device, cfg.train.precision, graphed_loss)
    execution = {"cuda_graphs": graphs.to_dict(), "static_shapes": loader.static, "optimizer": "Adam (fused)" if fused else "Adam (single-tensor)"}
    return TrainingSetup(method, model, trainer, loader, device, image_size, prepare_info, prepare_time, execution)
