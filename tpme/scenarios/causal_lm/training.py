"""Everything a training loop needs for one method on one causal-LM config: the adapted
decoder on the device, AdamW (weight decay, fused on CUDA), gradient-norm clipping, the
step's autocast (none for bf16 weights), the loader and the evaluator; `execution` records
which of these the cell used."""
from __future__ import annotations

from collections import Counter

import torch

from tpme.device import grad_scaler
from tpme.methods.registry import Method
from tpme.scenarios.base import DataShape, TrainingSetup
from tpme.scenarios.causal_lm.config import LmRunConfig
from tpme.scenarios.causal_lm.data import LmData, LmLoader
from tpme.scenarios.causal_lm.evaluate import Evaluator
from tpme.scenarios.causal_lm.model import assemble
from tpme.training.graphs import decide
from tpme.training.optim import describe, make_optimizer
from tpme.training.step import Trainer


def optimizer_for(cfg: LmRunConfig, model: torch.nn.Module, fused: bool) -> torch.optim.Optimizer:
    """`fused`: the step runs (or is estimated) on CUDA, where `optimizer_impl` picks fused or foreach."""
    trainable = list({id(p): p for p in model.parameters() if p.requires_grad}.values())
    impl = cfg.train.optimizer_impl if fused else None
    return make_optimizer(trainable, cfg.train.optimizer, cfg.train.lr, cfg.train.weight_decay, fused=impl == "fused", foreach=True if impl == "foreach" else None)


def trainable_dtypes(model: torch.nn.Module) -> dict[str, int]:
    """Trainable parameters by dtype (adapters stay fp32 beside bf16 weights when peft keeps them so)."""
    counts: Counter[str] = Counter()
    for p in {id(p): p for p in model.parameters() if p.requires_grad}.values():
        counts[str(p.dtype).removeprefix("torch.")] += p.numel()
    return dict(counts)


def build_training(cfg: LmRunConfig, method: Method, data: LmData, device: torch.device, seed: int = 0) -> TrainingSetup:
    torch.manual_seed(seed)
    assembly = assemble(cfg, method)
    model = assembly.model.to(device)
    precision = cfg.train.autocast_precision
    optimizer = optimizer_for(cfg, model, fused=device.type == "cuda")
    graphs = decide(cfg.train.cuda_graphs, method, assembly.part, device, cfg.train.compile)
    if cfg.train.compile:
        model.compile(dynamic=True)
    model.train()
    trainer = Trainer(model, optimizer, grad_scaler(device, precision), device, precision, cfg.train.grad_clip)
    execution = {
        "cuda_graphs": graphs.to_dict(), "static_shapes": False, "optimizer": describe(optimizer), "weight_decay": cfg.train.weight_decay,
        "grad_clip": cfg.train.grad_clip, "weights_dtype": cfg.train.weights_dtype, "autocast": None if precision == "fp32" else precision,
        "trainable_dtypes": trainable_dtypes(model), "gradient_checkpointing": cfg.train.gradient_checkpointing,
    }
    loader = LmLoader(data, cfg.train.batch_size, seed)
    evaluator = Evaluator(data, device, precision) if cfg.train.eval or cfg.train.early_stop else None
    return TrainingSetup(model, trainer, loader, {}, 0.0, execution, data.stats(), DataShape(len(data.splits["train"]), {"seq_len": cfg.data.seq_len}), evaluator)
