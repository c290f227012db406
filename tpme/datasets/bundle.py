"""A prepared dataset: tokenised titles, preprocessed sequences and an image-source
descriptor, saved once per run and loaded by every cell's process."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tpme.config import DataConfig
from tpme.datasets.preprocess import Preprocessed, Split, leave_one_out, preprocess, subsample_users
from tpme.datasets.synthetic import SyntheticCatalog, SyntheticSpec, generate_sequences
from tpme.datasets.tokenize import encode_titles, load_tokenizer, train_wordpiece
from tpme.errors import TpmeError


@dataclass
class DataBundle:
    name: str
    tokens: np.ndarray  # [n_items + 1, text_len] int32, row 0 = padding item
    sequences: list[np.ndarray]  # dense ids 1..n_items, chronological, preprocessed
    max_seq_len: int
    image_source: dict[str, Any]
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        return self.tokens.shape[0] - 1

    @property
    def n_users(self) -> int:
        return len(self.sequences)

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))

    @cached_property
    def split(self) -> Split:
        return leave_one_out(self.sequences, self.max_seq_len)

    @cached_property
    def item_counts(self) -> np.ndarray:
        """Occurrences of each item in the training part (index 0 unused)."""
        counts = np.zeros(self.n_items + 1, dtype=np.int64)
        for s in self.split.train:
            np.add.at(counts, s, 1)
        return counts

    def stats(self) -> dict[str, Any]:
        return {"name": self.name, "users": self.n_users, "items": self.n_items, "interactions": self.n_interactions, **self.info}

    def save(self, path: str | Path) -> None:
        path = Path(path)
        lengths = np.asarray([len(s) for s in self.sequences], dtype=np.int64)
        flat = np.concatenate(self.sequences) if self.sequences else np.zeros(0, dtype=np.int64)
        meta = {"name": self.name, "max_seq_len": self.max_seq_len, "image_source": self.image_source, "info": self.info}
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, tokens=self.tokens, lengths=lengths, flat=flat, meta=np.asarray(json.dumps(meta)))
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> "DataBundle":
        with np.load(path) as z:
            meta = json.loads(str(z["meta"]))
            sequences = np.split(z["flat"], np.cumsum(z["lengths"])[:-1]) if len(z["lengths"]) else []
            return cls(meta["name"], z["tokens"], list(sequences), meta["max_seq_len"], meta["image_source"], meta["info"])


def build_bundle(cfg: DataConfig, tokenizer_dir: str | None, vocab_size: int) -> DataBundle:
    """Read or generate the dataset named by `cfg.dataset` and tokenise its titles."""
    kind, _, arg = cfg.dataset.partition(":")
    if kind == "synthetic":
        return _synthetic_bundle(arg or "small", cfg, tokenizer_dir, vocab_size)
    path = Path(cfg.dataset)
    if not path.exists():
        raise TpmeError(f"dataset path {cfg.dataset!r} does not exist", "use synthetic[:tiny|small|medium|scientific] or a directory holding an items file and a users file")
    from tpme.datasets.readers import read_dataset_dir  # registered by the real-data readers

    return read_dataset_dir(path, cfg, tokenizer_dir, vocab_size)


def tokenize(titles: list[str], text_len: int, tokenizer_dir: str | None, vocab_size: int) -> tuple[np.ndarray, dict[str, Any]]:
    if tokenizer_dir:
        tok, origin = load_tokenizer(tokenizer_dir), str(tokenizer_dir)
    else:
        tok, origin = train_wordpiece(titles, vocab_size), "wordpiece trained on item titles"
    if tok.get_vocab_size() > vocab_size:
        raise TpmeError(
            f"tokenizer vocabulary ({tok.get_vocab_size()}) exceeds the text backbone's ({vocab_size})",
            "use the tokenizer that belongs to the text backbone",
        )
    return encode_titles(tok, titles, text_len), {"tokenizer": origin, "tokenizer_vocab": tok.get_vocab_size(), "pad_id": tok.token_to_id("[PAD]")}


def _synthetic_bundle(size: str, cfg: DataConfig, tokenizer_dir: str | None, vocab_size: int) -> DataBundle:
    spec = SyntheticSpec.named(size, cfg.seed)
    catalog = SyntheticCatalog(spec)
    raw, users = subsample_users(generate_sequences(spec, catalog), range(spec.n_users), cfg.max_users, cfg.seed)
    pre: Preprocessed = preprocess(raw, cfg.max_seq_len, users)
    titles = [catalog.title(int(k)) for k in pre.item_keys]
    tokens, tok_info = tokenize(titles, cfg.text_len, tokenizer_dir, vocab_size)
    source = {"kind": "synthetic", "n_users": spec.n_users, "n_items": spec.n_items, "n_groups": spec.n_groups, "seed": spec.seed, "item_keys": [int(k) for k in pre.item_keys]}
    return DataBundle(f"synthetic:{size}", tokens, pre.sequences, cfg.max_seq_len, source, tok_info)
