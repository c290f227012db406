"""Training batches: B users' last L+1 training items, the batch's unique items and their features.

Item features are gathered once per unique item (the recommender embeds each distinct
item of a batch once) and only for the modalities the method's item tower reads.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields, replace
from typing import Protocol

import numpy as np
import torch

from tpme.datasets.bundle import DataBundle
from tpme.datasets.images import ImageSource, open_image_source
from tpme.datasets.preprocess import pad_left

TEXT, IMAGE = "text", "image"
STATES = "states"  # precomputed per-item hidden states of both backbones, read from files per sample


class StateSource(Protocol):
    """Reads the precomputed hidden states of items (the official cached IISAN's per-item files)."""

    def read(self, items: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(text, image) states of `items`, each [N, n_states, d], one read per item and modality."""
        ...


@dataclass
class ItemBatch:
    """Features of N items. Pixels travel as uint8 and are normalised on the device."""

    item_ids: torch.Tensor  # [N] dense ids
    input_ids: torch.Tensor | None = None  # [N, text_len]
    attention_mask: torch.Tensor | None = None  # [N, text_len]
    pixels: torch.Tensor | None = None  # [N, 3, H, W] uint8 or normalised float
    text_states: torch.Tensor | None = None  # [N, n_states, d] every hidden state's [CLS] row (STATES)
    image_states: torch.Tensor | None = None  # [N, n_states, d]

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "ItemBatch":
        """The batch with `fn` applied to every tensor it holds (absent fields stay None)."""
        return ItemBatch(**{f.name: None if (t := getattr(self, f.name)) is None else fn(t) for f in fields(self)})

    def to(self, device: torch.device, non_blocking: bool = False) -> "ItemBatch":
        moved = self.map(lambda t: t.to(device, non_blocking=non_blocking))
        if moved.pixels is not None and moved.pixels.dtype == torch.uint8:
            moved.pixels = moved.pixels.float().div_(127.5).sub_(1.0)  # mean 0.5, std 0.5
        return moved

    def padded(self, n: int) -> "ItemBatch":
        """The first rows of n, the rest zeros (id 0 is the padding item)."""
        def pad(t: torch.Tensor) -> torch.Tensor:
            out = t.new_zeros((n, *t.shape[1:]))
            out[: len(t)] = t
            return out

        return self.map(pad)

    def pin_memory(self) -> "ItemBatch":
        return self.map(torch.Tensor.pin_memory)


@dataclass
class TrainBatch:
    seq_index: torch.Tensor  # [B, L+1] index into the batch's unique items, -1 = padding
    own: torch.Tensor | None  # [B, C] True where unique item c occurs in user b's sequence; None: the model masks by item id (official protocol)
    log_pop: torch.Tensor  # [C] log popularity of the unique items (logQ correction)
    items: ItemBatch
    real: torch.Tensor | None = None  # [C] False for static-shape padding slots; None: no padding

    def to(self, device: torch.device, non_blocking: bool = False) -> "TrainBatch":
        return replace(
            self,
            seq_index=self.seq_index.to(device, non_blocking=non_blocking),
            own=None if self.own is None else self.own.to(device, non_blocking=non_blocking),
            log_pop=self.log_pop.to(device, non_blocking=non_blocking),
            items=self.items.to(device, non_blocking=non_blocking),
            real=None if self.real is None else self.real.to(device, non_blocking=non_blocking),
        )

    def pin_memory(self) -> "TrainBatch":
        real = None if self.real is None else self.real.pin_memory()
        own = None if self.own is None else self.own.pin_memory()
        return TrainBatch(self.seq_index.pin_memory(), own, self.log_pop.pin_memory(), self.items.pin_memory(), real)


class ItemFeatures:
    """Gathers the features of given items for the requested modalities.

    `states`: where STATES are read from, one read per item and modality on every gather
    (needed when `needs` holds STATES)."""

    def __init__(self, bundle: DataBundle, needs: frozenset[str], image_size: int, pad_token: int = 0, states: StateSource | None = None):
        if STATES in needs and states is None:
            raise ValueError("an item tower that reads precomputed states needs a StateSource")
        self.tokens = torch.from_numpy(bundle.tokens.astype(np.int64))
        self.pad_token = pad_token
        self.needs = needs
        self.image_size = image_size
        self.images: ImageSource | None = open_image_source(bundle.image_source) if IMAGE in needs else None
        self.states = states if STATES in needs else None

    def gather(self, items: np.ndarray) -> ItemBatch:
        ids = torch.from_numpy(items)
        batch = ItemBatch(ids)
        if TEXT in self.needs:
            batch.input_ids = self.tokens[ids]
            batch.attention_mask = (batch.input_ids != self.pad_token).long()
        if self.images is not None:
            batch.pixels = torch.from_numpy(self.images.images(items, self.image_size))
        if self.states is not None:
            batch.text_states, batch.image_states = self.states.read(items)
        return batch


class TrainLoader:
    """One sample per user per epoch (the last L+1 training items), users shuffled each epoch.

    `static=True` gives every batch the same shapes, which a CUDA graph needs: B user
    rows (a short last batch gets empty users) and B*(L+1) item slots (padding slots
    hold item 0 and are marked not `real`, so the loss never offers them as candidates).
    """

    def __init__(self, bundle: DataBundle, features: ItemFeatures, batch_size: int, seed: int = 0, static: bool = False):
        self.samples = pad_left(bundle.split.train, bundle.max_seq_len + 1)
        counts = bundle.item_counts.astype(np.float64)
        self.log_pop = np.log(np.maximum(counts, 1.0) / max(counts.sum(), 1.0)).astype(np.float32)
        self.features = features
        self.batch_size = batch_size
        self.seed = seed
        self.static = static

    def __len__(self) -> int:
        return -(-len(self.samples) // self.batch_size)

    def order(self, epoch: int) -> np.ndarray:
        """The users of an epoch in their shuffled order: a function of the seed and epoch only,
        so a worker process computes the same order."""
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.samples))

    def batch(self, epoch: int, k: int) -> TrainBatch:
        """Batch k of an epoch, as `epoch(epoch)` yields it k-th."""
        users = self.order(epoch)[k * self.batch_size : (k + 1) * self.batch_size]
        return self.collate(self.samples[users])

    def epoch(self, epoch: int) -> Iterator[TrainBatch]:
        order = self.order(epoch)
        for start in range(0, len(order), self.batch_size):
            yield self.collate(self.samples[order[start : start + self.batch_size]])

    def forever(self) -> Iterator[TrainBatch]:
        epoch = 0
        while True:
            yield from self.epoch(epoch)
            epoch += 1

    def collate(self, seqs: np.ndarray) -> TrainBatch:
        if self.static and len(seqs) < self.batch_size:
            seqs = np.concatenate([seqs, np.zeros((self.batch_size - len(seqs), seqs.shape[1]), dtype=seqs.dtype)])
        unique, inverse = np.unique(seqs, return_inverse=True)
        has_pad = unique[0] == 0
        index = inverse.reshape(seqs.shape) - int(has_pad)  # padding -> -1
        items = unique[1:] if has_pad else unique
        slots = seqs.size if self.static else len(items)
        own = np.zeros((len(seqs), slots), dtype=bool)
        rows, cols = np.nonzero(index >= 0)
        own[rows, index[rows, cols]] = True
        log_pop = np.zeros(slots, dtype=np.float32)
        log_pop[: len(items)] = self.log_pop[items]
        features = self.features.gather(items)
        real = None
        if self.static:
            features = features.padded(slots)
            real = torch.arange(slots) < len(items)
        return TrainBatch(
            seq_index=torch.from_numpy(index.astype(np.int64)),
            own=torch.from_numpy(own),
            log_pop=torch.from_numpy(log_pop),
            items=features,
            real=real,
        )
