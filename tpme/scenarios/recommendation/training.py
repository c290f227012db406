"""Everything a training loop needs for one method on one config: the assembled recommender,
the method's one-off preparation (timed apart), optimizer, scaler, CUDA-graph decision and
data loader. Shared by the harness, the benchmarks and the tests, so that what is
benchmarked is exactly what is measured."""
from __future__ import annotations

import gc
import time

import torch

from tpme.datasets.batching import IMAGE, TEXT, ItemFeatures, TrainLoader
from tpme.datasets.bundle import DataBundle
from tpme.datasets.workers import describe as describe_loader
from tpme.device import grad_scaler, synchronize
from tpme.methods.registry import Method, PrepareContext
from tpme.scenarios.base import DataShape, TrainingSetup
from tpme.scenarios.recommendation import protocol
from tpme.scenarios.recommendation.config import RunConfig
from tpme.scenarios.recommendation.epoch_extras import OfficialEpochExtras
from tpme.scenarios.recommendation.evaluate import Evaluator
from tpme.scenarios.recommendation.model import assemble
from tpme.training.graphs import decide, prepare_graphs
from tpme.training.optim import describe, make_optimizer
from tpme.training.step import Trainer


def optimizer_for(cfg: RunConfig, model: torch.nn.Module, fused: bool) -> torch.optim.Optimizer:
    """Adam over every trainable parameter at the config's rate (fused on CUDA); under the
    official protocol at the official code's per-group rates, without weight decay."""
    if protocol.is_official(cfg):
        return make_optimizer(protocol.param_groups(model), "adam", cfg.train.lr, 0.0, fused)
    return make_optimizer([p for p in model.parameters() if p.requires_grad], "adam", cfg.train.lr, 0.0, fused)


def build_training(cfg: RunConfig, method: Method, bundle: DataBundle, device: torch.device, cache_dir: str = ".tpme-cache", seed: int = 0) -> TrainingSetup:
    torch.manual_seed(seed)
    assembly = assemble(cfg, method)
    backbones, tower, image_size = assembly.extras["backbones"], assembly.part, assembly.extras["image_size"]
    model = assembly.model.to(device)
    pad_id = int(bundle.info.get("pad_id", 0))

    t0 = time.perf_counter()
    all_features = ItemFeatures(bundle, frozenset({TEXT, IMAGE}), image_size, pad_id)
    prepare_info = method.prepare(tower, PrepareContext(backbones, bundle, all_features, device, cfg.train.precision, cache_dir))
    synchronize(device)
    prepare_time = time.perf_counter() - t0
    del backbones, all_features, assembly
    if not method.uses_backbones_in_training:
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()

    optimizer = optimizer_for(cfg, model, fused=device.type == "cuda")
    graphs = decide(cfg.train.cuda_graphs, method, tower, device, cfg.train.compile)
    if cfg.train.compile:
        model.compile(dynamic=True)
    features = ItemFeatures(bundle, tower.needs, image_size, pad_id, states=tower.state_source)
    workers = protocol.loader_workers(cfg)
    if protocol.is_official(cfg):
        loader: TrainLoader = protocol.OfficialLoader(bundle, features, cfg.train.batch_size, seed=seed, static=graphs.used, workers=workers)
    else:
        loader = TrainLoader(bundle, features, cfg.train.batch_size, seed=seed, static=graphs.used)
    model.train()
    graphed_loss = prepare_graphs(graphs, model, next(loader.epoch(0)), device, cfg.train.precision) if graphs.used else None
    stepped = protocol.distributed(model, device, method.name) if protocol.is_official(cfg) else model
    trainer = Trainer(stepped, optimizer, grad_scaler(device, cfg.train.precision), device, cfg.train.precision, None, graphed_loss)
    execution = {"cuda_graphs": graphs.to_dict(), "static_shapes": loader.static, "optimizer": describe(optimizer), "protocol": cfg.protocol,
                 "ddp": stepped is not model, "learning_rates": {g.get("name", "all"): g["lr"] for g in optimizer.param_groups},
                 "loader": {**describe_loader(workers), "prefetch_depth": cfg.train.prefetch, "pinned": device.type == "cuda"}}
    evaluator = Evaluator(bundle, features, device, cfg.train.precision, cfg.protocol) if cfg.train.eval or cfg.train.early_stop else None
    extras = None
    if protocol.is_official(cfg):  # the official epoch also validates, tests and saves a checkpoint
        extras = OfficialEpochExtras(cfg, method, model, optimizer, evaluator or Evaluator(bundle, features, device, cfg.train.precision, cfg.protocol), device)
    shape = DataShape(bundle.n_users, {"items": bundle.n_items})
    return TrainingSetup(model, trainer, loader, prepare_info, prepare_time, execution, bundle.stats(), shape, evaluator, extras)
