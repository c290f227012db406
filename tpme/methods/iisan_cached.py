"""IISAN fed from the hidden-state cache: training never runs a backbone.

`prepare` fingerprints the inputs, builds (or reuses, or rebuilds when stale or corrupt)
the cache of the used layers' [CLS] vectors, and installs the two arrays in the tower
as non-persistent buffers: on the device when they fit there, else memory-mapped on the
host with only each batch's rows copied over. The harness frees the backbones after
`prepare`, so the trained model holds only side networks, heads and user encoder.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from tpme.datasets.batching import ItemBatch
from tpme.errors import TpmeError
from tpme.methods import _hidden_cache as hidden_cache
from tpme.methods.iisan import IisanOptions, SideNetworks, build_side
from tpme.methods.registry import Method, PrepareContext, register_method
from tpme.models.backbones import Backbones
from tpme.models.item_tower import ItemTower


class IisanCachedTower(ItemTower):
    """Side networks over cached states; reads nothing but item ids."""

    needs = frozenset()

    def __init__(self, side: SideNetworks, text_layers: list[int], image_layers: list[int], text_dim: int, image_dim: int):
        super().__init__()
        self.side = side
        self.text_layers, self.image_layers = text_layers, image_layers
        # placeholders until prepare() installs the cache
        self.register_buffer("text_cache", torch.zeros(0, len(text_layers), text_dim), persistent=False)
        self.register_buffer("image_cache", torch.zeros(0, len(image_layers), image_dim), persistent=False)

    def install(self, text: torch.Tensor, image: torch.Tensor) -> None:
        self.text_cache, self.image_cache = text, image

    @staticmethod
    def _rows(cache: torch.Tensor, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        rows = cache[ids.to(cache.device)]
        return rows.to(ids.device, dtype=dtype, non_blocking=True)

    def forward(self, items: ItemBatch) -> torch.Tensor:
        if self.text_cache.shape[0] == 0:
            raise TpmeError("iisan-cached ran before its cache was prepared", "call Method.prepare(tower, ctx) first (the harness does)")
        dtype = self.side.fuse.weight.dtype
        return self.side(self._rows(self.text_cache, items.item_ids, dtype), self._rows(self.image_cache, items.item_ids, dtype))


@dataclass(frozen=True)
class IisanCachedOptions(IisanOptions):
    cache_dtype: str = "auto"  # auto (the run's precision), fp32, fp16, bf16
    cache_batch_size: int = 256  # items per backbone pass while building

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cache_batch_size < 1:
            raise TpmeError(f"cache_batch_size must be at least 1, got {self.cache_batch_size}")
        hidden_cache.storage_dtype(self.cache_dtype, "fp32")


@register_method("iisan-cached", "IISAN side networks fed from a one-off cache of the used layers' [CLS] states; no backbone in training")
class IisanCached(Method):
    Options = IisanCachedOptions
    uses_backbones_in_training = False

    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        side, text_layers, image_layers = build_side(backbones, embed_dim, self.options)
        return IisanCachedTower(side, text_layers, image_layers, backbones.text_hidden, backbones.image_hidden)

    def prepare(self, tower: ItemTower, ctx: PrepareContext) -> dict[str, Any]:
        assert isinstance(tower, IisanCachedTower)
        spec = hidden_cache.BuildSpec(tower.text_layers, tower.image_layers, hidden_cache.storage_dtype(self.options.cache_dtype, ctx.precision), ctx.precision, self.options.cache_batch_size)
        arrays, info = hidden_cache.ensure(ctx.cache_dir, ctx.backbones, ctx.bundle, ctx.features, spec, ctx.device, ctx.progress)
        text, image = (hidden_cache.place(arrays[m], ctx.device) for m in hidden_cache.MODALITIES)
        tower.install(text, image)
        info["resident"] = {"text": str(text.device), "image": str(image.device)}
        return info

    def cuda_graph_blocker(self, tower: ItemTower) -> str | None:
        """Capturable when the cache sits on the side networks' device: a batch is then a gather."""
        assert isinstance(tower, IisanCachedTower)
        if tower.text_cache.device != tower.side.fuse.weight.device or tower.image_cache.device != tower.side.fuse.weight.device:
            return "the hidden-state cache does not fit the device, so every batch's rows are copied from host memory"
        return None

    def estimate_prepare(self, tower: ItemTower, n_items: int, precision: str) -> None:
        """The cache's two arrays, shape and dtype only, for GPU-free estimation."""
        assert isinstance(tower, IisanCachedTower)
        _, dtype = hidden_cache.STORAGE[hidden_cache.storage_dtype(self.options.cache_dtype, precision)]
        tower.install(*(torch.empty(n_items + 1, *cache.shape[1:], dtype=dtype) for cache in (tower.text_cache, tower.image_cache)))
