"""IISAN's item towers: frozen backbones feeding the side networks every step (`iisan`), or
the side networks fed from the hidden-state cache (`iisan-cached`, no backbone in training)."""
from __future__ import annotations

import torch
from torch import nn

from tpme.datasets.batching import IMAGE, STATES, TEXT, ItemBatch
from tpme.errors import TpmeError
from tpme.methods.iisan.side import SideNetworks
from tpme.models.backbones import Backbones
from tpme.models.item_tower import ItemTower


def cls_states(model: nn.Module, layers: list[int], keep: list[torch.Tensor] | None = None, **inputs: torch.Tensor) -> torch.Tensor:
    """[N, len(layers), d]: the [CLS] vector of the chosen hidden states, no autograd graph.

    Forward hooks copy out only the [CLS] rows as each layer finishes, so a layer's full
    output is freed as soon as the next layer has read it; asking the model for
    `output_hidden_states` would keep every layer's [N, tokens, d] alive until the end
    (about 1.4 GB for ViT-base on a 352-item batch in fp16). Index 0 is the embedding
    output and l the output of layer l, as in `hidden_states`. `keep`: a list that receives
    each used layer's full output (the official code holds them until backward).
    """
    blocks = [model.embeddings, *_layer_list(model)]
    captured: dict[int, torch.Tensor] = {}

    def keep_cls(index: int):
        def hook(_module: nn.Module, _args: object, output: torch.Tensor | tuple) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            captured[index] = hidden[:, 0].clone()
            if keep is not None:
                keep.append(hidden)

        return hook

    handles = [blocks[l].register_forward_hook(keep_cls(l)) for l in set(layers)]
    try:
        with torch.no_grad():
            model(**inputs)
    finally:
        for h in handles:
            h.remove()
    return torch.stack([captured[l] for l in layers], dim=1)


def _layer_list(model: nn.Module) -> nn.ModuleList:
    """The transformer's stack of layers (BERT `encoder.layer`, ViT `layers`, ...)."""
    n = model.config.num_hidden_layers
    for module in model.modules():
        if isinstance(module, nn.ModuleList) and len(module) == n:
            return module
    raise TpmeError(f"{type(model).__name__} has no list of {n} layers for IISAN to read", "IISAN needs a BERT- or ViT-like backbone")


class IisanTower(ItemTower):
    """Frozen backbones (eval mode, no_grad) feeding the side networks every step.

    `official`: as the official code runs it, the backbones follow the model's train/eval
    mode (dropout on the states the side networks read) and every used layer's full hidden
    states stay alive until the backward pass reaches the tower (its gate products save
    views of whole layer outputs), which is what its memory measured.
    """

    needs = frozenset({TEXT, IMAGE})

    def __init__(self, backbones: Backbones, side: SideNetworks, text_layers: list[int], image_layers: list[int], official: bool = False):
        super().__init__()
        self.text = backbones.text.requires_grad_(False)
        self.image = backbones.image.requires_grad_(False)
        self.side = side
        self.text_layers, self.image_layers = text_layers, image_layers
        self.official = official

    def train(self, mode: bool = True) -> "IisanTower":
        super().train(mode)
        if not self.official:
            self.text.eval()
            self.image.eval()
        return self

    def forward(self, items: ItemBatch) -> torch.Tensor:
        kept: list[torch.Tensor] | None = [] if self.official and torch.is_grad_enabled() else None
        text = cls_states(self.text, self.text_layers, kept, input_ids=items.input_ids, attention_mask=items.attention_mask)
        image = cls_states(self.image, self.image_layers, kept, pixel_values=items.pixels)
        out = self.side(text, image)
        if kept and out.requires_grad:
            out.register_hook(lambda grad: kept.clear())
        return out


class IisanCachedTower(ItemTower):
    """Side networks over precomputed states: tpme's cache rows by item id (the batch carries
    nothing but ids), or, under the official protocol, the states the batch carries.

    `kept_backbones` (the official protocol): as the official cached run, both frozen
    backbones are held on the device although training never runs them (frozen, in eval
    mode, so they go where the model goes and count in its memory), and every batch
    carries its items' states, every hidden state of both backbones in fp32, read from the
    per-item files (`STATES`); the tower picks its layers from them.
    """

    def __init__(self, side: SideNetworks, text_layers: list[int], image_layers: list[int], text_dim: int, image_dim: int, kept_backbones: Backbones | None = None):
        super().__init__()
        self.side = side
        self.official = kept_backbones is not None
        self.kept_backbones = None if kept_backbones is None else nn.ModuleList([kept_backbones.text, kept_backbones.image]).requires_grad_(False).eval()
        self.needs = frozenset({STATES}) if self.official else frozenset()
        self._state_shapes = {} if kept_backbones is None else {
            "text": (kept_backbones.text.config.num_hidden_layers + 1, text_dim), "image": (kept_backbones.image.config.num_hidden_layers + 1, image_dim)}
        self.text_layers, self.image_layers = text_layers, image_layers
        # placeholders until prepare() installs the cache (never, under the official protocol)
        self.register_buffer("text_cache", torch.zeros(0, len(text_layers), text_dim), persistent=False)
        self.register_buffer("image_cache", torch.zeros(0, len(image_layers), image_dim), persistent=False)

    def state_shapes(self) -> dict[str, tuple[int, int]]:
        return dict(self._state_shapes)

    def train(self, mode: bool = True) -> "IisanCachedTower":
        super().train(mode)
        if self.kept_backbones is not None:
            self.kept_backbones.eval()
        return self

    def install(self, text: torch.Tensor, image: torch.Tensor) -> None:
        self.text_cache, self.image_cache = text, image

    @staticmethod
    def _rows(cache: torch.Tensor, ids: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        rows = cache[ids.to(cache.device)]
        return rows.to(ids.device, dtype=dtype, non_blocking=True)

    def forward(self, items: ItemBatch) -> torch.Tensor:
        dtype = self.side.fuse.weight.dtype
        if self.official:
            if items.text_states is None or items.image_states is None:
                raise TpmeError("official iisan-cached got a batch without its items' hidden states", "gather the items with the state files its prepare made (ItemFeatures(..., states=tower.state_source))")
            return self.side(items.text_states[:, self.text_layers].to(dtype), items.image_states[:, self.image_layers].to(dtype))
        if self.text_cache.shape[0] == 0:
            raise TpmeError("iisan-cached ran before its cache was prepared", "call Method.prepare(tower, ctx) first (the harness does)")
        return self.side(self._rows(self.text_cache, items.item_ids, dtype), self._rows(self.image_cache, items.item_ids, dtype))
