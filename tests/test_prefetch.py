"""The prefetcher yields the loader's batches in order and surfaces errors from its thread."""
import pytest
import torch

from tpme.datasets.batching import IMAGE, TEXT, ItemFeatures, TrainLoader
from tpme.datasets.bundle import DataBundle
from tpme.datasets.prefetch import Prefetcher


def test_same_batches_in_order(ci_bundle_path):
    bundle = DataBundle.load(ci_bundle_path)
    loader = TrainLoader(bundle, ItemFeatures(bundle, frozenset({TEXT, IMAGE}), 32), batch_size=8)
    direct = list(loader.epoch(3))
    with Prefetcher(loader.epoch(3), depth=2) as pre:
        fetched = list(pre)
    assert len(fetched) == len(direct)
    for a, b in zip(direct, fetched):
        assert torch.equal(a.seq_index, b.seq_index) and torch.equal(a.items.pixels, b.items.pixels)


def test_errors_reach_the_consumer():
    def broken():
        yield from ()
        raise ValueError("bad batch")

    with Prefetcher(broken()) as pre, pytest.raises(ValueError, match="bad batch"):
        next(pre)
