"""The two IISAN methods: `iisan` (backbones run every step without autograd) and
`iisan-cached` (a one-off cache of the used layers' [CLS] states; training never runs a
backbone). With the same weights both give the same item embeddings."""
from __future__ import annotations

from typing import Any

import torch

from tpme.methods.iisan import cache as hidden_cache
from tpme.methods.iisan import official_files
from tpme.methods.iisan.options import STORAGE, IisanCachedOptions, IisanOptions, storage_dtype
from tpme.methods.iisan.side import build_side
from tpme.methods.iisan.towers import IisanCachedTower, IisanTower
from tpme.methods.registry import Method, PrepareContext, register_method
from tpme.models.backbones import Backbones
from tpme.models.item_tower import ItemTower


@register_method("iisan", "IISAN side networks (intra text, intra image, inter) on every 2nd [CLS] state; backbones frozen, run without autograd")
class Iisan(Method):
    Options = IisanOptions
    refusals = {"causal-lm": "IISAN's side networks fuse the [CLS] states of a text and an image encoder; a decoder LM has neither"}

    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        side, text_layers, image_layers = build_side(backbones, embed_dim, self.options)
        return IisanTower(backbones, side, text_layers, image_layers, official=self.options.official)


@register_method("iisan-cached", "IISAN side networks fed from a one-off cache of the used layers' [CLS] states; no backbone in training")
class IisanCached(Method):
    Options = IisanCachedOptions
    uses_backbones_in_training = False
    refusals = Iisan.refusals

    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        side, text_layers, image_layers = build_side(backbones, embed_dim, self.options)
        kept = backbones if self.options.official else None  # the official code keeps them on the device
        return IisanCachedTower(side, text_layers, image_layers, backbones.text_hidden, backbones.image_hidden, kept)

    def prepare(self, tower: ItemTower, ctx: PrepareContext) -> dict[str, Any]:
        """tpme: the used layers' cache, on the device when it fits. Official (the tower says so):
        the official per-item state files, which every batch reads; nothing resident."""
        assert isinstance(tower, IisanCachedTower)
        if tower.official:
            tower.state_source, info = official_files.ensure(ctx.cache_dir, ctx.backbones, ctx.bundle, ctx.features, self.options.cache_batch_size, ctx.device, ctx.progress)
            info["resident"] = {"text": "files", "image": "files"}
            return info
        spec = hidden_cache.BuildSpec(tower.text_layers, tower.image_layers, storage_dtype(self.options.cache_dtype, ctx.precision), ctx.precision, self.options.cache_batch_size)
        arrays, info = hidden_cache.ensure(ctx.cache_dir, ctx.backbones, ctx.bundle, ctx.features, spec, ctx.device, ctx.progress)
        text, image = (hidden_cache.place(arrays[m], ctx.device) for m in hidden_cache.MODALITIES)
        tower.install(text, image)
        info["resident"] = {"text": str(text.device), "image": str(image.device)}
        return info

    def cuda_graph_blocker(self, tower: ItemTower) -> str | None:
        """Capturable when the cache sits on the side networks' device: a batch is then a gather."""
        assert isinstance(tower, IisanCachedTower)
        if tower.official:
            return "every batch's hidden states are read from per-item files on the host (official protocol)"
        if tower.text_cache.device != tower.side.fuse.weight.device or tower.image_cache.device != tower.side.fuse.weight.device:
            return "the hidden-state cache does not fit the device, so every batch's rows are copied from host memory"
        return None

    def estimate_prepare(self, tower: ItemTower, n_items: int, precision: str) -> None:
        """The cache's two arrays, shape and dtype only, for GPU-free estimation; under the
        official protocol none (the states travel in the batch, see `state_shapes`)."""
        assert isinstance(tower, IisanCachedTower)
        if tower.official:
            return
        _, dtype = STORAGE[storage_dtype(self.options.cache_dtype, precision)]
        tower.install(*(torch.empty(n_items + 1, *cache.shape[1:], dtype=dtype) for cache in (tower.text_cache, tower.image_cache)))
