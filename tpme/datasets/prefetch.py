"""Background batch preparation, so the data pipeline overlaps the training step.

A daemon thread collates the next `depth` batches (image synthesis or decoding, token
gathering, unique-item bookkeeping) while the device computes; on CUDA the batches are
pinned so the host-to-device copy is asynchronous. Errors in the thread surface in the
consumer at the batch where they happened. A source that can be closed (a generator over
worker processes) is closed when the thread stops.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

from tpme.datasets.batching import TrainBatch

_END = object()


class Prefetcher:
    def __init__(self, batches: Iterator[TrainBatch], depth: int = 2, pin_memory: bool = False):
        self._queue: queue.Queue = queue.Queue(maxsize=max(depth, 1))
        self._stop = threading.Event()
        self._pin = pin_memory
        self._thread = threading.Thread(target=self._fill, args=(batches,), daemon=True, name="tpme-prefetch")
        self._thread.start()

    def _put(self, item: object) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _fill(self, batches: Iterator[TrainBatch]) -> None:
        try:
            for batch in batches:
                if not self._put(batch.pin_memory() if self._pin else batch):
                    return
        except BaseException as exc:  # handed to the consumer
            self._put(exc)
            return
        finally:  # a source with resources (worker processes) releases them here, not at garbage collection
            close = getattr(batches, "close", None)
            if close is not None:
                close()
        self._put(_END)

    def __iter__(self) -> "Prefetcher":
        return self

    def __next__(self) -> TrainBatch:
        item = self._queue.get()
        if item is _END:
            raise StopIteration
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def __enter__(self) -> "Prefetcher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
