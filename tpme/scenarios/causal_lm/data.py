"""The causal-LM scenario's data: token sequences for training and two held-out splits.

Synthetic: a seeded first-order Markov chain over the model's vocabulary in which every
token has `BRANCHES` possible successors, so a model can learn it (the loss falls from
ln(vocab) towards ln(BRANCHES)); lengths are fixed (`seq_len`) or uniform between
`min_seq_len` and `seq_len`. A file: JSONL (one object per line, text in `text_field`)
or plain text (one sample per non-empty line), tokenised with a local tokenizer,
truncated to `seq_len`, split 80/10/10 in a seeded order. Batches are right-padded to
their longest sequence; padding is masked from attention and from the loss (label -100).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tpme.errors import TpmeError
from tpme.scenarios.base import DataShape
from tpme.scenarios.causal_lm.config import LmRunConfig
from tpme.scenarios.causal_lm.shapes import ModelSpec, model_config

BRANCHES = 4
IGNORE = -100
SPLITS = ("train", "valid", "test")
PAD_ID = 0  # synthetic data's padding token (never generated)


@dataclass
class LmBatch:
    input_ids: torch.Tensor  # [B, T] int64
    attention_mask: torch.Tensor  # [B, T] int64, 0 at padding
    labels: torch.Tensor  # [B, T] int64, -100 at padding

    def to(self, device: torch.device, non_blocking: bool = False) -> "LmBatch":
        return LmBatch(*(t.to(device, non_blocking=non_blocking) for t in (self.input_ids, self.attention_mask, self.labels)))

    def pin_memory(self) -> "LmBatch":
        return LmBatch(self.input_ids.pin_memory(), self.attention_mask.pin_memory(), self.labels.pin_memory())


@dataclass
class LmData:
    """Prepared sequences per split, each a list of int64 arrays, and how they were made."""

    splits: dict[str, list[np.ndarray]]
    info: dict[str, Any]

    def save(self, path: Path) -> None:
        arrays = {}
        for name, seqs in self.splits.items():
            arrays[f"{name}_tokens"] = np.concatenate(seqs) if seqs else np.zeros(0, np.int64)
            arrays[f"{name}_lengths"] = np.array([len(s) for s in seqs], np.int64)
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez(tmp, info=np.array(json.dumps(self.info)), **arrays)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path | str) -> "LmData":
        with np.load(path) as z:
            splits = {}
            for name in SPLITS:
                tokens, lengths = z[f"{name}_tokens"], z[f"{name}_lengths"]
                splits[name] = np.split(tokens, np.cumsum(lengths)[:-1]) if len(lengths) else []
            return cls(splits, json.loads(str(z["info"])))

    def stats(self) -> dict[str, Any]:
        out = dict(self.info)
        for name, seqs in self.splits.items():
            lengths = [len(s) for s in seqs]
            out[f"{name}_sequences"] = len(seqs)
            out[f"{name}_tokens"] = int(sum(lengths))
        out["mean_train_length"] = out["train_tokens"] / max(out["train_sequences"], 1)
        return out


def data_key(cfg: LmRunConfig) -> str:
    blob = json.dumps({"model": cfg.model, "data": cfg.to_dict()["data"]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _lengths(rng: np.random.Generator, n: int, cfg: LmRunConfig) -> np.ndarray:
    d = cfg.data
    if d.min_seq_len is None:
        return np.full(n, d.seq_len)
    return rng.integers(d.min_seq_len, d.seq_len + 1, size=n)


def synthetic(cfg: LmRunConfig, vocab: int) -> LmData:
    """Markov-chain sequences: train, valid and test drawn from one chain, in disjoint seeded streams."""
    if vocab <= BRANCHES + 1:
        raise TpmeError(f"the model's vocabulary ({vocab}) is too small for synthetic data", f"use a model with more than {BRANCHES + 1} tokens")
    rng = np.random.default_rng(cfg.data.seed)
    successors = rng.integers(1, vocab, size=(vocab, BRANCHES))
    counts = {"train": cfg.data.samples, "valid": cfg.data.eval_samples, "test": cfg.data.eval_samples}
    splits: dict[str, list[np.ndarray]] = {}
    for i, (name, n) in enumerate(counts.items()):
        r = np.random.default_rng([cfg.data.seed, i + 1])
        lengths = _lengths(r, n, cfg)
        seqs = []
        for length in lengths:
            seq = np.empty(length, np.int64)
            seq[0] = r.integers(1, vocab)
            choice = r.integers(0, BRANCHES, size=length)
            for t in range(1, length):
                seq[t] = successors[seq[t - 1], choice[t]]
            seqs.append(seq)
        splits[name] = seqs
    info = {"dataset": "synthetic", "vocab_size": vocab, "pad_id": PAD_ID, "branches": BRANCHES, "entropy_floor_nats": math.log(BRANCHES)}
    return LmData(splits, info)


def _texts(path: Path, field: str) -> list[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    if path.suffix.lower() not in (".jsonl", ".json"):
        return [line for line in lines if line.strip()]
    texts = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise TpmeError(f"{path}:{i} is not JSON: {e}", "give one JSON object per line") from None
        if not isinstance(obj, dict) or not isinstance(obj.get(field), str):
            raise TpmeError(f"{path}:{i} has no text field {field!r}", "set --text-field to the field holding the text")
        texts.append(obj[field])
    return texts


def tokenizer_for(cfg: LmRunConfig) -> Any:
    """The local tokenizer of a file dataset: --tokenizer, else the model directory's; checked against the model's vocabulary."""
    from transformers import AutoTokenizer

    spec = ModelSpec.parse(cfg.model)
    where = Path(cfg.data.tokenizer) if cfg.data.tokenizer else spec.tokenizer_dir
    if where is None:
        raise TpmeError(f"the dataset {cfg.data.dataset} needs a tokenizer and the model {cfg.model!r} has none", "give --tokenizer DIR (a local tokenizer directory)")
    if not where.is_dir():
        raise TpmeError(f"tokenizer directory {where} does not exist", "give --tokenizer DIR (a local tokenizer directory)")
    try:
        tok = AutoTokenizer.from_pretrained(str(where))
    except (OSError, ValueError) as e:
        raise TpmeError(f"cannot load a tokenizer from {where}: {e}", "give a directory with tokenizer.json or tokenizer_config.json") from None
    vocab = model_config(spec).vocab_size
    if len(tok) > vocab:
        raise TpmeError(f"the tokenizer in {where} has {len(tok)} tokens but the model {cfg.model!r} has a vocabulary of {vocab}",
                        "use the model's own tokenizer (--tokenizer DIR) or a model whose vocabulary covers it")
    return tok


def from_file(cfg: LmRunConfig) -> LmData:
    path = Path(cfg.data.dataset)
    if not path.is_file():
        raise TpmeError(f"dataset {path} is not a file", "use --dataset synthetic, or a .jsonl / .txt file")
    tok = tokenizer_for(cfg)
    texts = _texts(path, cfg.data.text_field)
    if len(texts) < 3:
        raise TpmeError(f"{path} has {len(texts)} samples; train, valid and test need at least one each", "give a larger file")
    seqs = [np.asarray(tok(t, add_special_tokens=True)["input_ids"][: cfg.data.seq_len], np.int64) for t in texts]
    seqs = [s for s in seqs if len(s) >= 2]
    order = np.random.default_rng(cfg.data.seed).permutation(len(seqs))
    n_eval = max(1, len(seqs) // 10)
    parts = {"valid": order[:n_eval], "test": order[n_eval : 2 * n_eval], "train": order[2 * n_eval :]}
    pad = tok.pad_token_id if tok.pad_token_id is not None else (tok.eos_token_id or 0)
    info = {"dataset": str(path), "tokenizer": str(tok.name_or_path), "vocab_size": len(tok), "pad_id": int(pad)}
    return LmData({k: [seqs[i] for i in idx] for k, idx in parts.items()}, info)


def check_source(cfg: LmRunConfig) -> None:
    """The data can be read: a file exists and its tokenizer fits the model (checked before a run writes)."""
    if cfg.data.dataset != "synthetic" and not Path(cfg.data.dataset).is_file():
        raise TpmeError(f"dataset {cfg.data.dataset} is not a file", "use --dataset synthetic, or a .jsonl / .txt file")
    if cfg.data.dataset != "synthetic" or cfg.data.tokenizer:
        tokenizer_for(cfg)


def build(cfg: LmRunConfig) -> LmData:
    if cfg.data.dataset == "synthetic":
        if cfg.data.tokenizer:
            tokenizer_for(cfg)  # a mismatching tokenizer is an error even where synthetic tokens do not need it
        return synthetic(cfg, model_config(ModelSpec.parse(cfg.model)).vocab_size)
    return from_file(cfg)


def data_shape(cfg: LmRunConfig) -> DataShape:
    """Sequences per epoch: the config's count for synthetic data, counted for a file."""
    if cfg.data.dataset == "synthetic":
        return DataShape(cfg.data.samples, {"seq_len": cfg.data.seq_len})
    return DataShape(len(build(cfg).splits["train"]), {"seq_len": cfg.data.seq_len})


def collate(seqs: list[np.ndarray], pad_id: int) -> LmBatch:
    """Right-padded to the longest sequence; padding masked from attention and loss."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.from_numpy(s)
        mask[i, : len(s)] = 1
    labels = ids.masked_fill(mask == 0, IGNORE)
    return LmBatch(ids, mask, labels)


def synthetic_batch(cfg: LmRunConfig) -> LmBatch:
    """The largest batch of a config, for estimates: B sequences of seq_len tokens."""
    b, t = cfg.train.batch_size, cfg.data.seq_len
    ids = torch.ones(b, t, dtype=torch.long)
    return LmBatch(ids, torch.ones(b, t, dtype=torch.long), ids.clone())


class LmLoader:
    """Training batches of the train split: a seeded order per epoch, or forever."""

    def __init__(self, data: LmData, batch_size: int, seed: int = 0):
        self.seqs = data.splits["train"]
        self.pad_id = int(data.info.get("pad_id", PAD_ID))
        self.batch_size = batch_size
        self.seed = seed

    def __len__(self) -> int:
        return math.ceil(len(self.seqs) / self.batch_size)

    def epoch(self, seed: int) -> Iterator[LmBatch]:
        order = np.random.default_rng([self.seed, seed]).permutation(len(self.seqs))
        for start in range(0, len(order), self.batch_size):
            yield collate([self.seqs[i] for i in order[start : start + self.batch_size]], self.pad_id)

    def forever(self) -> Iterator[LmBatch]:
        e = 0
        while True:
            yield from self.epoch(e)
            e += 1
