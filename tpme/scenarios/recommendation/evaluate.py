"""Effectiveness: full-ranking HR@K and NDCG@K on the leave-one-out validation and test
targets, for a trained recommender and for the popularity baseline.

Every item is embedded once per evaluation by the trained tower (eval mode, no_grad,
batched); a user is the user encoder's state at the last position of their history;
every item is scored, history items other than the target are masked. Under the
official protocol a user's whole history is masked, the target included when it was
bought before (the official code's `score[history] = -inf`): such a user is a certain miss.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch

from tpme.datasets.batching import ItemFeatures
from tpme.datasets.bundle import DataBundle
from tpme.datasets.preprocess import pad_left
from tpme.device import autocast, synchronize
from tpme.errors import NonFiniteError
from tpme.results.finite import NON_FINITE_FIX
from tpme.results.quality import KNOWN
from tpme.results.record import Baseline, QualityValue
from tpme.scenarios.recommendation.model import Recommender
from tpme.scenarios.recommendation.protocol import OFFICIAL
from tpme.scenarios.recommendation.ranking import hit_ndcg, mask_history, mask_whole_history, target_ranks

K = 10
SPLITS = ("valid", "test")
ITEM_BATCH = 256
USER_BATCH = 1024
HISTORY_MASKING = "history items other than the target are masked; ties count half"
OFFICIAL_MASKING = "the whole history is masked, a target bought before included (official protocol); ties count half"
METRICS = (KNOWN[f"hr@{K}"], KNOWN[f"ndcg@{K}"])


def _histories(bundle: DataBundle, split: str) -> tuple[np.ndarray, np.ndarray]:
    s = bundle.split
    hist, target = (s.valid_history, s.valid_target) if split == "valid" else (s.test_history, s.test_target)
    return pad_left(hist, bundle.max_seq_len), target


def _whole_histories(bundle: DataBundle, split: str) -> np.ndarray:
    """Every item a user had before the target (the official code's `users_history_for_*`)."""
    drop = 2 if split == "valid" else 1
    seqs = [s[:-drop] for s in bundle.sequences]
    return pad_left(seqs, max((len(s) for s in seqs), default=1))


def _rank_all(score_batch: Callable[[torch.Tensor], torch.Tensor], hist: np.ndarray, target: np.ndarray, device: torch.device, masked: np.ndarray | None = None,
              user_batch: int = USER_BATCH) -> dict[str, float]:
    """HR@K and NDCG@K over all users; score_batch(histories [B, L]) -> scores [B, n_items + 1].
    `masked` [users, H]: items to mask whole (official protocol); None: the history but the target."""
    hits = ndcgs = 0.0
    for start in range(0, len(hist), user_batch):
        h = torch.from_numpy(hist[start : start + user_batch]).to(device)
        t = torch.from_numpy(target[start : start + user_batch]).to(device)
        raw = score_batch(h).float()
        if not bool(torch.isfinite(raw).all()):
            bad = int((~torch.isfinite(raw)).sum())
            raise NonFiniteError(f"{bad} item score(s) are NaN or infinite: the model diverged", NON_FINITE_FIX)
        if masked is None:
            scores = mask_history(raw, h, t)
        else:
            scores = mask_whole_history(raw, torch.from_numpy(masked[start : start + user_batch]).to(device))
        hit, ndcg = hit_ndcg(target_ranks(scores, t), K)
        hits += float(hit.sum())
        ndcgs += float(ndcg.sum())
    n = max(len(hist), 1)
    return {f"hr@{K}": hits / n, f"ndcg@{K}": ndcgs / n, "users": len(hist)}


def _batches(n: int, size: int) -> Iterator[np.ndarray]:
    for start in range(1, n + 1, size):
        yield np.arange(start, min(start + size, n + 1), dtype=np.int64)


def score_users(model: Recommender, emb: torch.Tensor, hist: torch.Tensor, cast: Callable[[], AbstractContextManager]) -> torch.Tensor:
    """Every item's score [B, n_items + 1] for users with histories `hist` [B, L] (0 = padding):
    the user encoder's state at the last position (under `cast`, the evaluation's autocast)
    against every item embedding in float32. The estimate runs it on fake tensors."""
    valid = hist > 0
    with cast():
        users = model.user_encoder(emb[hist] * valid[..., None], valid)[:, -1]
    return users.float() @ emb.T


class Evaluator:
    """Evaluates a Recommender on the bundle's validation and test targets."""

    metrics = METRICS
    select = METRICS[0]  # early stopping follows validation HR@10
    info = {"k": K, "masking": HISTORY_MASKING}

    def __init__(self, bundle: DataBundle, features: ItemFeatures, device: torch.device, precision: str, protocol: str = "tpme"):
        self.bundle = bundle
        self.features = features
        self.device = device
        self.precision = precision
        self.data = {split: _histories(bundle, split) for split in SPLITS}
        self.masked = {split: _whole_histories(bundle, split) if protocol == OFFICIAL else None for split in SPLITS}
        self.info = {"k": K, "masking": OFFICIAL_MASKING if protocol == OFFICIAL else HISTORY_MASKING}

    @torch.no_grad()
    def item_embeddings(self, model: Recommender, batch_size: int = ITEM_BATCH) -> torch.Tensor:
        """[n_items + 1, e] float32 with row 0 (padding) zero."""
        rows = [torch.zeros(1, model.user_encoder.positions.embedding_dim, device=self.device)]
        for ids in _batches(self.bundle.n_items, batch_size):
            with autocast(self.device, self.precision):
                rows.append(model.tower(self.features.gather(ids).to(self.device)).float())
        return torch.cat(rows)

    @torch.no_grad()
    def evaluate(self, model: Recommender) -> dict[str, Any]:
        """{valid: {...}, test: {...}, eval_time_s}; the model is left in train mode.
        A DistributedDataParallel wrapper (official protocol) is looked through."""
        model = getattr(model, "module", model)
        t0 = time.perf_counter()
        model.eval()
        try:
            emb = self.item_embeddings(model)
            out: dict[str, Any] = {split: self._rank_split(model, emb, split, USER_BATCH) for split in SPLITS}
        finally:
            model.train()
        synchronize(self.device)
        out["eval_time_s"] = time.perf_counter() - t0
        return out

    @torch.no_grad()
    def split_pass(self, model: Recommender, split: str, item_batch: int, user_batch: int) -> dict[str, float]:
        """One split alone, as the official code evaluates after an epoch (`run_eval`, `run_eval_test`):
        every item embedded afresh at `item_batch`, then the split's users scored `user_batch` at a
        time; the model is left in train mode."""
        model = getattr(model, "module", model)
        model.eval()
        try:
            return self._rank_split(model, self.item_embeddings(model, item_batch), split, user_batch)
        finally:
            model.train()

    def _rank_split(self, model: Recommender, emb: torch.Tensor, split: str, user_batch: int) -> dict[str, float]:
        def score(hist: torch.Tensor) -> torch.Tensor:
            return score_users(model, emb, hist, lambda: autocast(self.device, self.precision))

        return _rank_all(score, *self.data[split], self.device, self.masked[split], user_batch)


def popularity_baseline(bundle: DataBundle) -> Baseline:
    """Every user gets the items ranked by training-split popularity, history masked; under
    `official_masking` the same ranking evaluated as the official protocol masks (the data,
    and so this baseline, is shared by both protocols)."""
    counts = torch.from_numpy(bundle.item_counts.astype(np.float64))
    device = torch.device("cpu")
    details: dict[str, Any] = {"k": K, "masking": HISTORY_MASKING, "official_masking": {"masking": OFFICIAL_MASKING}}
    for split in SPLITS:
        details[split] = _rank_all(lambda h: counts.expand(len(h), -1).clone(), *_histories(bundle, split), device)
        details["official_masking"][split] = _rank_all(lambda h: counts.expand(len(h), -1).clone(), *_histories(bundle, split), device, _whole_histories(bundle, split))
    quality = {m.name: QualityValue(details["test"][m.name], m.higher_is_better, "test") for m in METRICS}
    return Baseline("popularity", quality, details)
