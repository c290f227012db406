"""Deterministic synthetic multimodal recommendation data with learnable structure.

Every item belongs to a latent group. The group shapes the item's title (group topic
words), its image (group colour and stripe pattern) and the users' transitions (users
stay in a group or move to the next one), so a trained recommender beats popularity.
Titles and images are derived from (seed, item id) on demand: nothing per item is held
in memory except the group assignment.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tpme.errors import TpmeError

# users, items, latent groups
SIZES: dict[str, tuple[int, int, int]] = {
    "tiny": (64, 120, 6),
    "small": (400, 800, 16),
    "medium": (3_000, 5_000, 32),
    "scientific": (12_076, 20_314, 64),  # the size of Amazon Scientific after preprocessing
}

_SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qui", "dor", "fen", "gal", "hex", "jun"]
_NOISE_TILES, _NOISE_MAX = 8, 20
_COMMON = ["kit", "pro", "set", "pack", "tool", "mini", "plus", "lab", "grade", "series"]


@dataclass(frozen=True)
class SyntheticSpec:
    n_users: int
    n_items: int
    n_groups: int
    seed: int = 0

    @classmethod
    def named(cls, size: str, seed: int = 0) -> "SyntheticSpec":
        if size not in SIZES:
            raise TpmeError(f"unknown synthetic size {size!r}", f"use one of {', '.join(SIZES)}")
        users, items, groups = SIZES[size]
        return cls(users, items, groups, seed)


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


class SyntheticCatalog:
    """Titles and images of synthetic items 1..n_items, generated from the item id."""

    def __init__(self, spec: SyntheticSpec):
        self.spec = spec
        order = _rng(spec.seed, 1).permutation(spec.n_items)
        self.group = np.empty(spec.n_items + 1, dtype=np.int64)
        self.group[0] = -1
        self.group[1 + order] = np.arange(spec.n_items) % spec.n_groups
        self.group_items = [1 + np.sort(order[g :: spec.n_groups]) for g in range(spec.n_groups)]
        grng = _rng(spec.seed, 2)
        self._group_words = [
            [self._word(grng) for _ in range(6)] for _ in range(spec.n_groups)
        ]
        self._group_colour = grng.uniform(0.1, 0.9, size=(spec.n_groups, 3))
        self._group_angle = grng.uniform(0, np.pi, size=spec.n_groups)
        self._group_freq = grng.uniform(2.0, 8.0, size=spec.n_groups)
        self._patterns: dict[tuple[int, int], np.ndarray] = {}
        self._noise: dict[int, np.ndarray] = {}

    @staticmethod
    def _word(rng: np.random.Generator) -> str:
        return "".join(rng.choice(_SYLLABLES, size=rng.integers(2, 4)))

    def title(self, item: int) -> str:
        g = self.group[item]
        rng = _rng(self.spec.seed, 3, item)
        topic = rng.choice(self._group_words[g], size=3, replace=False)
        own = self._word(rng)
        return f"{topic[0]} {own} {topic[1]} {rng.choice(_COMMON)} {topic[2]} {item % 97}"

    def image(self, item: int, size: int) -> np.ndarray:
        """uint8 [size, size, 3] (a view of `image_chw`)."""
        return self.image_chw(item, size).transpose(1, 2, 0)

    def image_chw(self, item: int, size: int, out: np.ndarray | None = None) -> np.ndarray:
        """uint8 [3, size, size]: the group's colour and stripes, shifted by an item offset, plus
        one of a bank of noise tiles. A few copies of the pixels, no per-pixel maths per item,
        so a training batch of hundreds of items costs milliseconds, not seconds."""
        h = _mix(self.spec.seed, item)
        dy, dx = h % size, (h >> 20) % size
        base = self._pattern(int(self.group[item]), size)
        out = np.empty((3, size, size), dtype=np.uint8) if out is None else out
        out[:, dy:, dx:] = base[:, : size - dy, : size - dx]
        out[:, dy:, :dx] = base[:, : size - dy, size - dx :]
        out[:, :dy, dx:] = base[:, size - dy :, : size - dx]
        out[:, :dy, :dx] = base[:, size - dy :, size - dx :]
        out += self._noise_bank(size)[(h >> 40) % _NOISE_TILES]
        return out

    def _pattern(self, group: int, size: int) -> np.ndarray:
        key = (group, size)
        if key not in self._patterns:
            lin = np.linspace(0.0, 1.0, size, dtype=np.float32)
            yy, xx = np.meshgrid(lin, lin, indexing="ij")
            angle = self._group_angle[group]
            wave = np.sin(2 * np.pi * self._group_freq[group] * (np.cos(angle) * xx + np.sin(angle) * yy))
            img = self._group_colour[group].astype(np.float32)[:, None, None] * (0.65 + 0.35 * wave[None])
            self._patterns[key] = (img * (255 - _NOISE_MAX)).astype(np.uint8)
        return self._patterns[key]

    def _noise_bank(self, size: int) -> np.ndarray:
        if size not in self._noise:
            rng = _rng(self.spec.seed, 4, size)
            self._noise[size] = rng.integers(0, _NOISE_MAX + 1, size=(_NOISE_TILES, 3, size, size), dtype=np.uint8)
        return self._noise[size]


def _mix(seed: int, item: int) -> int:
    """splitmix64 of (seed, item): a cheap deterministic per-item hash."""
    z = (seed * 0x9E3779B97F4A7C15 + item * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return z ^ (z >> 31)


MAX_LENGTH = 13  # max_seq_len 10 + 3: what preprocessing keeps


def generate_sequences(spec: SyntheticSpec, catalog: SyntheticCatalog) -> list[np.ndarray]:
    """One chronological item sequence per user (ids 1..n_items), 5 to 13 long, no repeats.

    Lengths are 5 + a truncated geometric draw, so the mean (about 6.77) gives the
    interaction count of Amazon Scientific at its size; every item then occurs at least
    once (see `_cover_every_item`), so the item count survives preprocessing.
    """
    sequences = []
    popularity = [1.0 / np.arange(1, len(items) + 1) ** 0.6 for items in catalog.group_items]
    popularity = [p / p.sum() for p in popularity]
    for user in range(spec.n_users):
        rng = _rng(spec.seed, 5, user)
        length = 5 + min(int(rng.geometric(0.3545)) - 1, MAX_LENGTH - 5)
        group = int(rng.integers(spec.n_groups))
        seq: list[int] = []
        seen: set[int] = set()
        while len(seq) < length:
            items = catalog.group_items[group]
            item = int(items[rng.choice(len(items), p=popularity[group])])
            if item not in seen:
                seq.append(item)
                seen.add(item)
            r = rng.random()
            if r < 0.3:
                group = (group + 1) % spec.n_groups
            elif r < 0.4:
                group = int(rng.integers(spec.n_groups))
        sequences.append(np.asarray(seq, dtype=np.int64))
    _cover_every_item(spec, catalog, sequences)
    return sequences


def _cover_every_item(spec: SyntheticSpec, catalog: SyntheticCatalog, sequences: list[np.ndarray]) -> None:
    """Put each item that no user drew in place of a repeated item of its own group, so the
    group structure holds and every generated item is part of the dataset."""
    counts = np.bincount(np.concatenate(sequences), minlength=spec.n_items + 1)
    missing = np.nonzero(counts[1:] == 0)[0] + 1
    if not len(missing):
        return
    slots: list[list[tuple[int, int]]] = [[] for _ in range(spec.n_groups)]
    for user, seq in enumerate(sequences):
        for pos, item in enumerate(seq):
            slots[catalog.group[item]].append((user, pos))
    rng = _rng(spec.seed, 6)
    order = [rng.permutation(len(s)) for s in slots]
    cursor = [0] * spec.n_groups
    for item in missing:
        g = catalog.group[item]
        while cursor[g] < len(order[g]):
            user, pos = slots[g][order[g][cursor[g]]]
            cursor[g] += 1
            old = sequences[user][pos]
            if counts[old] > 1:
                sequences[user][pos] = item
                counts[old] -= 1
                counts[item] = 1
                break
