"""The two IISAN methods: `iisan` (backbones run every step without autograd) and
`iisan-cached` (a one-off cache of the used layers' [CLS] states; training never runs a
backbone). With the same weights both give the same item embeddings."""
from __future__ import annotations

from functools import partial
from typing import Any

import torch

from tpme.device import autocast
from tpme.methods.iisan import cache as hidden_cache
from tpme.methods.iisan import official_files
from tpme.methods.iisan.options import STORAGE, IisanCachedOptions, IisanOptions, storage_dtype
from tpme.methods.iisan.side import build_side
from tpme.methods.iisan.towers import IisanCachedTower, IisanTower, cls_states
from tpme.methods.registry import Method, PrepareContext, PreparePass, register_method
from tpme.models.backbones import Backbones
from tpme.models.item_tower import ItemTower


OFFICIAL_PREPROCESS_BATCH = 128  # preprocess_vectors.py's process_items(batch_size=128)


def _item_inputs(backbones: Backbones, text_len: int, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    size = backbones.image_size
    return torch.ones(batch, text_len, dtype=torch.long), torch.empty(batch, 3, size, size)


def _official_preprocess_batch(backbones: Backbones, text_len: int, batch: int) -> tuple[Any, Any]:
    """One batch of the official preprocessing: BERT's output (all hidden states) is still held
    while ViT runs, as `process_items` deletes both only after saving."""
    ids, pixels = _item_inputs(backbones, text_len, batch)
    backbones.text.eval()
    backbones.image.eval()
    text = backbones.text(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    image = backbones.image(pixel_values=pixels, output_hidden_states=True)
    return text, image


def _cache_batch(backbones: Backbones, text_layers: list[int], image_layers: list[int], text_len: int, batch: int, precision: str) -> tuple[torch.Tensor, torch.Tensor]:
    """One batch of tpme's cache build (`cache.build`)."""
    ids, pixels = _item_inputs(backbones, text_len, batch)
    backbones.text.eval()
    backbones.image.eval()
    with autocast(ids.device, precision):
        text = cls_states(backbones.text, text_layers, input_ids=ids, attention_mask=torch.ones_like(ids))
        image = cls_states(backbones.image, image_layers, pixel_values=pixels)
    return text, image


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

    def prepare_pass(self, tower: ItemTower, backbones: Backbones, text_len: int, precision: str) -> PreparePass:
        """tpme: the cache build's batch (the used layers' [CLS] rows copied out as each layer ends,
        under the run's autocast, beside the side networks; the cache fills host memory). Official: `preprocess_vectors.py` as the
        official code runs it, a process of its own holding only the backbones, in fp32 at batch
        128 with `output_hidden_states=True`, so every layer's full output of both backbones is
        kept until the batch's states are saved."""
        assert isinstance(tower, IisanCachedTower)
        models = (backbones.text, backbones.image)
        if tower.official:
            return PreparePass(partial(_official_preprocess_batch, backbones, text_len, OFFICIAL_PREPROCESS_BATCH), models,
                               f"the official preprocess_vectors.py: both backbones, fp32, batch {OFFICIAL_PREPROCESS_BATCH}, every hidden state kept")
        batch = self.options.cache_batch_size
        run = partial(_cache_batch, backbones, tower.text_layers, tower.image_layers, text_len, batch, precision)
        return PreparePass(run, (*models, tower.side), f"tpme's cache build: batch {batch}, {precision}, [CLS] rows of the used layers")

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
