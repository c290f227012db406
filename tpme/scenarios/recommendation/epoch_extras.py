"""What the official code's epoch does besides training, and so what the paper's epoch times
include (GAIR-Lab/IISAN run.py: `report_time_train` logs the epoch after all of it):

- validation (`run_eval`): every item embedded afresh by the item tower (eval mode, no
  grad) 256 at a time, then every validation user scored 256 at a time;
- test (`run_eval_test`, run when validation improved, so always in the first epoch): the
  same on the test users, items and users at the training batch size;
- checkpoint (`save_model`, Code_Uncached only; Code_Cached, which ran cached IISAN, has it
  commented out): `torch.save` of the model's and the optimizer's state dicts and the RNG states.

A cell times each part once, after its timed training window (`OfficialEpochExtras`); the
estimate models the same parts (`plan`). What differs from the official code: tpme scores a
batch of users with one vectorised ranking where the official code sorts every user's
scores in a Python loop, embeds the real items only (the official code also embeds item 0,
the padding), reads item features from memory rather than LMDB through DataLoader workers,
and the checkpoint is flushed to disk (fsync) so that its time is the disk's, not the page
cache's.
"""
from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tpme.datasets.batching import ItemBatch
from tpme.device import autocast, synchronize
from tpme.methods.registry import Method
from tpme.scenarios.base import DataShape, EpochExtrasPlan, ExtrasTimes, ForwardPiece
from tpme.scenarios.recommendation.config import RunConfig
from tpme.scenarios.recommendation.data import synthetic_items
from tpme.scenarios.recommendation.evaluate import Evaluator, score_users

VALID_BATCH = 256  # run.py: run_eval(..., 256, ...) embeds items and scores users 256 at a time
PARTS = ("validation", "test", "checkpoint")
CHECKPOINT_PREFIX = "tpme-checkpoint-"


def batches(cfg: RunConfig) -> dict[str, int]:
    """Items and users per batch of each evaluation part: validation 256, test the training batch
    (run.py passes `args.batch_size` to `run_eval_test`)."""
    return {"validation": VALID_BATCH, "test": cfg.train.batch_size}


def writes_checkpoint(method: Method) -> bool:
    """Code_Uncached saves every epoch; a method whose training never runs the backbones is
    cached IISAN, which the official Code_Cached ran with its per-epoch save commented out."""
    return method.uses_backbones_in_training


def save_checkpoint(model: nn.Module, optimizer: torch.optim.Optimizer, folder: Path) -> int:
    """Write what `save_model` writes to a new file in `folder`, flushed to disk, then remove it;
    returns the file's size in bytes."""
    with tempfile.NamedTemporaryFile(prefix=CHECKPOINT_PREFIX, suffix=".pt", dir=folder) as f:  # removed on leaving
        state = {"model_state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "rng_state": torch.get_rng_state()}
        if torch.cuda.is_initialized():
            state["cuda_rng_state"] = torch.cuda.get_rng_state()
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
        return os.fstat(f.fileno()).st_size


class OfficialEpochExtras:
    """The official epoch's validation, test and (uncached methods) checkpoint, each timed once.

    Uses the run's own evaluator when it evaluates for quality (the passes only read the
    model, so its quality figures are untouched), else one of its own: no --eval needed."""

    def __init__(self, cfg: RunConfig, method: Method, model: nn.Module, optimizer: torch.optim.Optimizer, evaluator: Evaluator, device: torch.device):
        self.model, self.optimizer, self.evaluator, self.device = model, optimizer, evaluator, device
        self.batches = batches(cfg)
        self.checkpoint = writes_checkpoint(method)

    def __call__(self, folder: Path) -> ExtrasTimes:
        parts: dict[str, float] = {}
        for part, split in (("validation", "valid"), ("test", "test")):
            size = self.batches[part]
            parts[part] = self._timed(lambda: self.evaluator.split_pass(self.model, split, size, size))[1]
        if not self.checkpoint:
            return ExtrasTimes(parts)
        written, parts["checkpoint"] = self._timed(lambda: save_checkpoint(self.model, self.optimizer, folder))
        return ExtrasTimes(parts, written)

    def _timed(self, fn: Callable[[], Any]) -> tuple[Any, float]:
        synchronize(self.device)
        t0 = time.perf_counter()
        result = fn()
        synchronize(self.device)
        return result, time.perf_counter() - t0


@dataclass
class UserScoring:
    """One batch of users scored against every item (the estimate's input of a scoring piece)."""

    item_embeddings: torch.Tensor  # [n_items + 1, e]
    histories: torch.Tensor  # [users, L]


def plan(cfg: RunConfig, method: Method, data: DataShape, image_size: int, needs: frozenset[str], state_shapes: dict[str, tuple[int, int]]) -> EpochExtrasPlan:
    """The estimate's model of the same parts: per part one batch of items through the tower and
    one batch of users scored, repeated as many times as the data needs."""
    n_items, n_users = data.sizes["items"], data.samples
    pieces: list[ForwardPiece] = []
    for part, size in batches(cfg).items():
        pieces.append(ForwardPiece(part, synthetic_items(cfg, size, image_size, needs, state_shapes), _embedder(cfg.train.precision), n_items / size))
        users = UserScoring(torch.empty(n_items + 1, cfg.train.embed_dim, device="meta"), torch.ones(size, cfg.data.max_seq_len, dtype=torch.long))
        pieces.append(ForwardPiece(part, users, _scorer(cfg.train.precision), n_users / size))
    return EpochExtrasPlan(tuple(pieces), writes_checkpoint(method))


def _embedder(precision: str) -> Callable[[nn.Module, ItemBatch], torch.Tensor]:
    def embed(model: nn.Module, items: ItemBatch) -> torch.Tensor:
        """As `Evaluator.item_embeddings` embeds one batch."""
        device = items.item_ids.device
        with autocast(device, precision):
            return model.tower(items.to(device)).float()

    return embed


def _scorer(precision: str) -> Callable[[nn.Module, UserScoring], torch.Tensor]:
    def score(model: nn.Module, users: UserScoring) -> torch.Tensor:
        return score_users(model, users.item_embeddings, users.histories, lambda: autocast(users.histories.device, precision))

    return score
