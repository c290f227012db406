"""What `torch.cuda.max_memory_reserved()` would report for a step: the CUDA caching
allocator replayed over the step's allocations and frees.

The model follows PyTorch's native caching allocator with its default settings
(c10/cuda/CUDACachingAllocator.cpp; no expandable segments, no max_split_size):
- a request is rounded up to a multiple of 512 B (at least 512 B);
- requests of at most 1 MiB come from the small pool, whose segments are 2 MiB; larger
  ones from the large pool, whose new segments are 20 MiB for requests under 10 MiB and
  the request rounded up to 2 MiB otherwise;
- a request takes the smallest free cached block of its pool that holds it (then the
  lowest address); the block is split when the rest is at least 512 B (small pool) or
  more than 1 MiB (large pool), else handed out whole;
- a freed block returns to its pool's cache and merges with free neighbours of its
  segment; segments are never released (no `empty_cache` in a step), so reserved memory
  only grows, and its peak is the reserved total at the end.
Not modelled: the CUDA context (never in `reserved`), per-stream pools (one stream),
and retries after an out-of-memory (a step that does not fit is `fits: false` anyway).
The trace is the estimator's: the tensors that exist before the step (parameters, buffers,
optimizer state, the batch), then every allocation and free of the step, replayed twice so
that the second step reuses what the first left cached, as a steady-state step does.
"""
from __future__ import annotations

import bisect
import itertools
from dataclasses import dataclass, field

MIN_BLOCK = 512
SMALL_SIZE = 1 << 20  # requests up to this come from the small pool
SMALL_BUFFER = 2 << 20  # small pool segment size
LARGE_BUFFER = 20 << 20  # segment for large requests under MIN_LARGE_ALLOC
MIN_LARGE_ALLOC = 10 << 20
ROUND_LARGE = 2 << 20

ALLOC, FREE = "alloc", "free"


def round_size(size: int) -> int:
    return MIN_BLOCK if size < MIN_BLOCK else MIN_BLOCK * -(-size // MIN_BLOCK)


def segment_size(size: int) -> int:
    if size <= SMALL_SIZE:
        return SMALL_BUFFER
    if size < MIN_LARGE_ALLOC:
        return LARGE_BUFFER
    return ROUND_LARGE * -(-size // ROUND_LARGE)


@dataclass(eq=False)
class _Block:
    segment: int
    offset: int
    size: int
    small: bool
    free: bool = True
    prev: "_Block | None" = None
    next: "_Block | None" = None

    def key(self) -> tuple[int, int, int]:
        return (self.size, self.segment, self.offset)


@dataclass
class CachingAllocator:
    """A replay of the caching allocator: `malloc(handle, bytes)` / `free(handle)`."""

    reserved: int = 0
    peak_reserved: int = 0
    allocated: int = 0
    peak_allocated: int = 0
    _pools: dict[bool, list[tuple[int, int, int, _Block]]] = field(default_factory=lambda: {True: [], False: []})
    _live: dict[int, _Block] = field(default_factory=dict)
    _segments: itertools.count = field(default_factory=itertools.count)

    def _insert(self, block: _Block) -> None:
        bisect.insort(self._pools[block.small], (*block.key(), block))

    def _remove(self, block: _Block) -> None:
        pool = self._pools[block.small]
        i = bisect.bisect_left(pool, block.key(), key=lambda e: e[:3])
        assert pool[i][3] is block
        del pool[i]

    def malloc(self, handle: int, nbytes: int) -> None:
        size = round_size(nbytes)
        small = size <= SMALL_SIZE
        pool = self._pools[small]
        i = bisect.bisect_left(pool, (size, -1, -1), key=lambda e: e[:3])
        if i < len(pool):
            block = pool[i][3]
            del pool[i]
        else:
            seg = segment_size(size)
            block = _Block(next(self._segments), 0, seg, small)
            self.reserved += seg
            self.peak_reserved = max(self.peak_reserved, self.reserved)
        rest = block.size - size
        if (rest >= MIN_BLOCK) if small else (rest > SMALL_SIZE):
            tail = _Block(block.segment, block.offset + size, rest, small, True, block, block.next)
            if block.next is not None:
                block.next.prev = tail
            block.next, block.size = tail, size
            self._insert(tail)
        block.free = False
        self._live[handle] = block
        self.allocated += block.size
        self.peak_allocated = max(self.peak_allocated, self.allocated)

    def free(self, handle: int) -> None:
        block = self._live.pop(handle)
        self.allocated -= block.size
        block.free = True
        for neighbour in (block.prev, block.next):
            if neighbour is not None and neighbour.free:
                self._remove(neighbour)
                if neighbour is block.prev:
                    neighbour.size += block.size
                    neighbour.next = block.next
                    if block.next is not None:
                        block.next.prev = neighbour
                    block = neighbour
                else:
                    block.size += neighbour.size
                    block.next = neighbour.next
                    if neighbour.next is not None:
                        neighbour.next.prev = block
        self._insert(block)


def replay(before: list[tuple[str, int, int]], step: list[tuple[str, int, int]], repeats: int = 2) -> CachingAllocator:
    """Events (kind, handle, bytes): the tensors alive before the step, then the step's, the
    step replayed `repeats` times; a block the step leaves allocated is freed before its next replay."""
    alloc = CachingAllocator()
    for kind, handle, nbytes in before:
        alloc.malloc(handle, nbytes) if kind == ALLOC else alloc.free(handle)
    for r in range(repeats):
        tag = (r + 1) << 40  # handles of each replay kept apart from the tensors before
        for kind, handle, nbytes in step:
            if kind == ALLOC:
                alloc.malloc(tag + handle, nbytes)
            elif tag + handle in alloc._live:
                alloc.free(tag + handle)
            elif handle in alloc._live:
                alloc.free(handle)  # a tensor from before the step (freed in the first replay only)
        if r + 1 < repeats:
            for h in [h for h in alloc._live if h >= tag]:
                alloc.free(h)
    return alloc
