"""A prepared dataset: tokenised titles, preprocessed sequences and an image-source
descriptor, saved once per run and loaded by every cell's process."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from tpme.datasets.preprocess import Split, leave_one_out


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
