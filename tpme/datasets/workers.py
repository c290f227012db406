"""Training batches built in worker processes, as the official IISAN code's DataLoader builds them.

The official training loader (`--num_workers 4`, `pin_memory=True`) hands each worker process
the user indices of a whole batch; the worker builds every sample (in the cached run two
`torch.load`s per item slot) and collates them. Here each worker builds a whole batch with the
loader's own `batch(epoch, k)`, and torch's DataLoader returns the batches in key order, so
the batches are those of the loader's single-process `epoch`, bit for bit, in the same order.

Workers are forked (the start method of the official code on Linux) in the thread that asks
for the batches, so they inherit the loader without pickling. They belong to the caller's
process group, so the bench's kill of a cell's group (timeout, launcher gone) takes them too,
and a worker whose parent dies exits by itself (the DataLoader's parent watchdog).
"""
from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from torch.utils.data import DataLoader, Dataset

from tpme.datasets.batching import TrainBatch

PREFETCH_FACTOR = 2  # batches each worker prepares ahead: the DataLoader default the official code runs with
START_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else multiprocessing.get_start_method()


class KeyedLoader(Protocol):
    def batch(self, epoch: int, k: int) -> TrainBatch: ...


class _Batches(Dataset):
    """Batch (epoch, k) of a loader: what one worker builds per request."""

    def __init__(self, loader: KeyedLoader):
        self.loader = loader

    def __getitem__(self, key: tuple[int, int]) -> TrainBatch:
        return self.loader.batch(*key)


def _as_built(batch: TrainBatch) -> TrainBatch:
    """The worker's batch unchanged: it is collated already."""
    return batch


def in_workers(loader: KeyedLoader, keys: Iterable[tuple[int, int]], workers: int) -> Iterator[TrainBatch]:
    """The batches of `keys` ((epoch, k) pairs, possibly endless), built by `workers` processes
    forked now, in the calling thread; they end when the iterator is exhausted or closed."""
    with warnings.catch_warnings():  # more workers than cores is the official setting, asked for; the record names the count
        warnings.filterwarnings("ignore", message="This DataLoader will create", category=UserWarning)
        data = DataLoader(_Batches(loader), batch_size=None, sampler=keys, num_workers=workers, collate_fn=_as_built,
                          prefetch_factor=PREFETCH_FACTOR, multiprocessing_context=START_METHOD)
        return _drain(iter(data))


def _drain(batches: Iterator[TrainBatch]) -> Iterator[TrainBatch]:
    """Yields the workers' batches; closing this generator releases the DataLoader iterator,
    whose finaliser stops and joins the workers."""
    yield from batches


def describe(workers: int) -> dict[str, Any]:
    """How batches are prepared, for the record's `execution["loader"]`."""
    if not workers:
        return {"workers": 0, "unit": "batch", "built_in": "the main process"}
    return {"workers": workers, "unit": "batch", "built_in": "worker processes", "library": "torch.utils.data.DataLoader",
            "start_method": START_METHOD, "prefetch_factor": PREFETCH_FACTOR}
