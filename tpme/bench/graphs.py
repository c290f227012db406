"""CUDA graphs for the training step of methods whose step allows it (cached IISAN).

A cached-IISAN step does little arithmetic (8.7 GFLOP at the paper preset) in several
hundred small kernels (426), so run eagerly it is bound by kernel launches, not by the GPU. Capturing the loss's forward
and backward as CUDA graphs (`torch.cuda.make_graphed_callables`) replays all of them
with two launches. The optimizer step stays eager (fused Adam: a few kernels) so the
gradient scaler keeps its usual checks. Capture needs static shapes (the loader then
pads every batch to B users and B*(L+1) item slots), no host reads of device values
(the loss is a masked mean), and autocast without its cast cache.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
from torch import nn

from tpme.bench.device import autocast, synchronize
from tpme.config import RunConfig
from tpme.datasets.batching import ItemBatch, TrainBatch
from tpme.errors import TpmeError
from tpme.methods.registry import Method
from tpme.models.item_tower import ItemTower

_ITEM_FIELDS = ("item_ids", "input_ids", "attention_mask", "pixels")
_BATCH_FIELDS = ("seq_index", "own", "log_pop", "real")


@dataclass
class GraphDecision:
    mode: str  # auto|on|off, as configured
    used: bool
    reason: str  # why not, or "captured"
    capture_s: float | None = None  # one-off, outside epoch time

    def to_dict(self) -> dict:
        return asdict(self)


def decide(mode: str, method: Method, tower: ItemTower, device: torch.device, compiled: bool) -> GraphDecision:
    """Whether to capture this cell's step; `on` turns every obstacle into an error."""
    if mode == "off":
        return GraphDecision(mode, False, "off")
    if device.type != "cuda":
        reason: str | None = f"CUDA graphs need a CUDA device; this cell runs on {device.type}"
    elif compiled:
        reason = "--compile is on; the step is compiled instead"
    else:
        reason = method.cuda_graph_blocker(tower)
    if reason is not None and mode == "on":
        raise TpmeError(f"--cuda-graphs on, but {method.name}'s step cannot be captured: {reason}", "use --cuda-graphs auto (captures where possible) or off")
    return GraphDecision(mode, reason is None, reason or "captured")


def would_capture(cfg: RunConfig, method: Method, tower: ItemTower) -> bool:
    """Whether a CUDA cell of `cfg` captures this method's step (what the estimator times)."""
    mode = "auto" if cfg.train.cuda_graphs == "on" else cfg.train.cuda_graphs  # on = auto that raises instead of falling back
    return decide(mode, method, tower, torch.device("cuda"), cfg.train.compile).used


class _FlatLoss(nn.Module):
    """The recommender's loss over a flat tuple of tensors: the only input a graph takes."""

    def __init__(self, model: nn.Module, rebuild: Callable[[tuple[torch.Tensor, ...]], TrainBatch]):
        super().__init__()
        self.model = model
        self.rebuild = rebuild

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        return self.model(self.rebuild(tensors))


def _present(obj: object, fields: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f for f in fields if getattr(obj, f) is not None)


class GraphedLoss:
    """The loss's forward and backward captured on `sample`'s shapes, with its input buffers.

    `load` copies a batch from the host straight into the graph's input buffers (no
    device-side staging copy); calling the result with that batch replays the graphs.
    Later batches must have the sample's shapes and fields (the static loader's do).
    """

    def __init__(self, model: nn.Module, sample: TrainBatch, device: torch.device, precision: str):
        self.device = device
        self.item_fields, self.batch_fields = _present(sample.items, _ITEM_FIELDS), _present(sample, _BATCH_FIELDS)
        self.inputs = tuple(t.clone() for t in self._tensors(sample.to(device)))  # owned: never aliases a caller's batch
        self.batch = self._rebuild(self.inputs)
        flat = _FlatLoss(model, self._rebuild)
        with autocast(device, precision, cache_enabled=False):
            self._graphed = torch.cuda.make_graphed_callables(flat, self.inputs)

    def _tensors(self, batch: TrainBatch) -> tuple[torch.Tensor, ...]:
        if _present(batch.items, _ITEM_FIELDS) != self.item_fields or _present(batch, _BATCH_FIELDS) != self.batch_fields:
            raise TpmeError("a batch does not have the fields of the batch the CUDA graph was captured on", "use the static loader (TrainLoader(static=True)) with CUDA graphs")
        return tuple(getattr(batch.items, f) for f in self.item_fields) + tuple(getattr(batch, f) for f in self.batch_fields)

    def _rebuild(self, tensors: tuple[torch.Tensor, ...]) -> TrainBatch:
        n = len(self.item_fields)
        items = ItemBatch(**dict(zip(self.item_fields, tensors[:n])))
        return TrainBatch(items=items, **dict(zip(self.batch_fields, tensors[n:])))

    def load(self, batch: TrainBatch) -> TrainBatch:
        """Copy `batch` (host, pinned on CUDA) into the input buffers; returns them as a batch."""
        host = self._tensors(batch)
        if any(h.dtype != s.dtype for h, s in zip(host, self.inputs)):  # uint8 pixels are normalised on the way
            host = self._tensors(batch.to(self.device, non_blocking=True))
        for static, h in zip(self.inputs, host):
            static.copy_(h, non_blocking=True)
        return self.batch

    def __call__(self, batch: TrainBatch) -> torch.Tensor:
        return self._graphed(*self._tensors(batch))


def prepare_graphs(decision: GraphDecision, model: nn.Module, sample: TrainBatch, device: torch.device, precision: str) -> GraphedLoss | None:
    """Capture (the decision says to); in `auto` a failed capture is recorded and the step stays eager."""
    t0 = time.perf_counter()
    try:
        loss = GraphedLoss(model, sample, device, precision)
    except (RuntimeError, AssertionError) as e:
        if decision.mode == "on":
            raise TpmeError(f"CUDA graph capture failed: {type(e).__name__}: {e}", "run with --cuda-graphs off (or auto, which falls back to eager and records why)") from e
        synchronize(device)
        decision.used, decision.reason = False, f"capture failed, ran eagerly: {type(e).__name__}: {e}"
        return None
    synchronize(device)
    decision.capture_s = time.perf_counter() - t0
    return loss
