"""DESIGN section 2 preprocessing and the leave-one-out split."""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

MIN_INTERACTIONS = 5


@dataclass(frozen=True)
class Preprocessed:
    """Sequences over dense item ids 1..n_items (0 is padding) and the original item keys."""

    sequences: list[np.ndarray]
    item_keys: list[Hashable]  # item_keys[i - 1] is the original key of dense id i
    user_keys: list[Hashable]

    @property
    def n_items(self) -> int:
        return len(self.item_keys)

    @property
    def n_interactions(self) -> int:
        return int(sum(len(s) for s in self.sequences))


def preprocess(
    raw: Sequence[Sequence[Hashable]],
    max_seq_len: int,
    user_keys: Sequence[Hashable] | None = None,
) -> Preprocessed:
    """Drop users with < 5 interactions, keep each user's last max_seq_len + 3 items, re-index items."""
    keep = max_seq_len + 3
    user_keys = list(range(len(raw))) if user_keys is None else list(user_keys)
    index: dict[Hashable, int] = {}
    sequences, kept_users = [], []
    for key, seq in zip(user_keys, raw):
        if len(seq) < MIN_INTERACTIONS:
            continue
        dense = [index.setdefault(item, len(index) + 1) for item in list(seq)[-keep:]]
        sequences.append(np.asarray(dense, dtype=np.int64))
        kept_users.append(key)
    return Preprocessed(sequences, list(index), kept_users)


@dataclass(frozen=True)
class Split:
    """Leave-one-out: train = seq[:-2]; validation target seq[-2]; test target seq[-1]."""

    train: list[np.ndarray]
    valid_history: list[np.ndarray]
    valid_target: np.ndarray
    test_history: list[np.ndarray]
    test_target: np.ndarray


def leave_one_out(sequences: Sequence[np.ndarray], max_seq_len: int) -> Split:
    return Split(
        train=[s[:-2] for s in sequences],
        valid_history=[s[:-2][-max_seq_len:] for s in sequences],
        valid_target=np.asarray([s[-2] for s in sequences], dtype=np.int64),
        test_history=[s[:-1][-max_seq_len:] for s in sequences],
        test_target=np.asarray([s[-1] for s in sequences], dtype=np.int64),
    )


def pad_left(seqs: Sequence[np.ndarray], length: int) -> np.ndarray:
    """[len(seqs), length] int64, each sequence's last `length` items right-aligned, 0 padded."""
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for row, s in enumerate(seqs):
        s = s[-length:]
        if len(s):
            out[row, length - len(s):] = s
    return out


def subsample_users(
    raw: Sequence[Sequence[Hashable]], user_keys: Sequence[Hashable], max_users: int | None, seed: int
) -> tuple[list[Sequence[Hashable]], list[Hashable]]:
    """A seeded random subset of `max_users` of the users that preprocessing keeps, in input order."""
    eligible = [i for i, s in enumerate(raw) if len(s) >= MIN_INTERACTIONS]
    if max_users is None or max_users >= len(eligible):
        return list(raw), list(user_keys)
    chosen = np.sort(np.random.default_rng([seed, 7]).choice(eligible, size=max_users, replace=False))
    return [raw[i] for i in chosen], [user_keys[i] for i in chosen]
