"""The caching-allocator replay behind `predicted_reserved_bytes`: rounding, pools, segment
sizes, best fit, splitting and merging as PyTorch's native allocator does them."""
from __future__ import annotations

from tpme.estimate.allocator import ALLOC, FREE, CachingAllocator, replay, round_size, segment_size

MIB = 1 << 20


def test_rounding_and_segment_sizes():
    assert [round_size(n) for n in (1, 512, 513, 4096)] == [512, 512, 1024, 4096]
    assert segment_size(512) == segment_size(MIB) == 2 * MIB
    assert segment_size(MIB + 512) == segment_size(10 * MIB - 512) == 20 * MIB
    assert segment_size(10 * MIB) == 10 * MIB and segment_size(11 * MIB + 1) == 12 * MIB


def test_small_blocks_share_a_segment_and_freed_blocks_are_reused():
    a = CachingAllocator()
    for h in range(4):
        a.malloc(h, 1000)  # 1024 B each, one 2 MiB small segment
    assert a.reserved == 2 * MIB and a.allocated == 4 * 1024
    a.free(1)
    a.malloc(9, 900)  # fits the freed 1024 B block: no new segment
    assert a.reserved == 2 * MIB


def test_large_requests_split_and_merge():
    a = CachingAllocator()
    a.malloc(0, 3 * MIB)  # a 20 MiB segment, split: 17 MiB left cached
    a.malloc(1, 5 * MIB)  # from the cached rest
    assert a.reserved == 20 * MIB
    a.free(0)
    a.free(1)  # merges back into one 20 MiB block
    a.malloc(2, 19 * MIB)
    assert a.reserved == 20 * MIB
    a.malloc(3, 12 * MIB)  # nothing cached fits: a new segment of exactly 12 MiB
    assert a.reserved == 32 * MIB and a.peak_reserved == 32 * MIB


def test_a_remainder_of_at_most_1_mib_is_not_split_off_a_large_block():
    a = CachingAllocator()
    a.malloc(0, 11 * MIB + 4096)  # a 12 MiB segment with under 1 MiB left: handed out whole
    assert a.allocated == 12 * MIB


def test_replay_reuses_the_first_steps_cache():
    before = [(ALLOC, 0, 40 * MIB)]
    step = [(ALLOC, 1, 30 * MIB), (ALLOC, 2, 3 * MIB), (FREE, 1, 0), (FREE, 2, 0)]
    one, two = replay(before, step, repeats=1), replay(before, step, repeats=2)
    assert one.peak_reserved == two.peak_reserved == 40 * MIB + 30 * MIB + 20 * MIB
