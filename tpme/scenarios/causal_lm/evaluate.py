"""Quality on held-out sequences: mean next-token loss (nats per predicted token) and its
perplexity, both lower-is-better, on the valid and test splits."""
from __future__ import annotations

import math
import time
from typing import Any

import torch

from tpme.device import autocast, synchronize
from tpme.results.quality import KNOWN
from tpme.scenarios.causal_lm.data import IGNORE, LmData, collate

METRICS = (KNOWN["loss"], KNOWN["perplexity"])
EVAL_BATCH = 16
SPLITS = ("valid", "test")


class Evaluator:
    metrics = METRICS
    select = METRICS[0]  # early stopping follows the validation loss
    info = {"loss": "mean next-token cross-entropy over non-padding tokens (nats)", "perplexity": "exp(loss)"}

    def __init__(self, data: LmData, device: torch.device, precision: str):
        self.data, self.device, self.precision = data, device, precision
        self.pad_id = int(data.info.get("pad_id", 0))

    @torch.no_grad()
    def split_loss(self, model: torch.nn.Module, split: str) -> dict[str, float]:
        seqs = self.data.splits[split]
        total, tokens = 0.0, 0
        for start in range(0, len(seqs), EVAL_BATCH):
            batch = collate(seqs[start : start + EVAL_BATCH], self.pad_id).to(self.device)
            n = int((batch.labels[:, 1:] != IGNORE).sum())
            with autocast(self.device, self.precision):
                loss = model(batch)
            total += float(loss.float()) * n
            tokens += n
        mean = total / max(tokens, 1)
        return {"loss": mean, "perplexity": math.exp(min(mean, 700.0)), "tokens": tokens}

    def evaluate(self, model: torch.nn.Module) -> dict[str, Any]:
        t0 = time.perf_counter()
        model.eval()
        try:
            out: dict[str, Any] = {split: self.split_loss(model, split) for split in SPLITS}
        finally:
            model.train()
        synchronize(self.device)
        out["eval_time_s"] = time.perf_counter() - t0
        return out
