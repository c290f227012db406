"""IISAN: intra- and inter-modal side adapted networks (DESIGN section 3, Fu et al. 2024).

The backbones stay frozen and run without an autograd graph; three small side networks
read the [CLS] vectors of every `stride`-th hidden state (0, 2, ..., L) and only they,
their gates and their heads train. The frozen backbones always run in eval mode, so the
side networks see the same states the cached variant stores.

Hidden sizes: the intra networks work at their backbone's size. The inter network works
at the image size; when the text size differs, a trainable Linear(d_text -> d_image)
maps the text states into it (absent when the sizes match, as for BERT/ViT-base).
Depths: with different layer counts the schedule is laid on the deeper backbone and
mapped proportionally onto the other, so both give the same number of steps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from tpme.datasets.batching import IMAGE, TEXT, ItemBatch
from tpme.errors import TpmeError
from tpme.methods.registry import Method, register_method
from tpme.models.backbones import Backbones
from tpme.models.item_tower import ItemTower

GATE_TEMPERATURE = 0.1


class SAN(nn.Module):
    """Side adapter block: x + Linear(b -> d)(ReLU(Linear(d -> b)(x)))."""

    def __init__(self, dim: int, bottleneck: int):
        super().__init__()
        self.down = nn.Linear(dim, bottleneck)
        self.up = nn.Linear(bottleneck, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.up(torch.relu(self.down(x)))


class SideNetworks(nn.Module):
    """Text-intra, image-intra and inter networks over per-step [CLS] states, heads and fusion."""

    def __init__(self, text_dim: int, image_dim: int, steps: int, bottleneck: int, embed_dim: int):
        super().__init__()
        self.steps = steps
        self.text_san = nn.ModuleList(SAN(text_dim, bottleneck) for _ in range(steps))
        self.image_san = nn.ModuleList(SAN(image_dim, bottleneck) for _ in range(steps))
        self.inter_san = nn.ModuleList(SAN(image_dim, bottleneck) for _ in range(steps))
        self.text_to_inter = nn.Linear(text_dim, image_dim) if text_dim != image_dim else nn.Identity()
        self.gate_theta = nn.Parameter(torch.zeros(3, steps))  # rows: text-intra, image-intra, inter
        self.text_head = nn.Sequential(nn.Linear(text_dim, text_dim), nn.Linear(text_dim, embed_dim))
        self.image_head = nn.Sequential(nn.Linear(image_dim, image_dim), nn.Linear(image_dim, embed_dim))
        self.inter_head = nn.Sequential(nn.Linear(image_dim, image_dim), nn.Linear(image_dim, embed_dim))
        self.fuse = nn.Linear(3 * embed_dim, embed_dim)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """text [N, steps, d_t], image [N, steps, d_v] -> item embeddings [N, e]."""
        gates = torch.sigmoid(self.gate_theta / GATE_TEMPERATURE)
        s_t = text.new_zeros(text.shape[0], text.shape[2])
        s_v = image.new_zeros(image.shape[0], image.shape[2])
        s_m = image.new_zeros(image.shape[0], image.shape[2])
        # g·h + (1 - g)·s as one lerp(s, h, g): the same value in a third of the kernels,
        # which matters because the cached step is bound by kernel launches, not arithmetic
        for k in range(self.steps):
            h_t, h_v = text[:, k], image[:, k]
            g_t, g_v, g_m = gates[:, k].unbind()
            s_t = self.text_san[k](torch.lerp(s_t, h_t.to(s_t.dtype), g_t))
            s_v = self.image_san[k](torch.lerp(s_v, h_v.to(s_v.dtype), g_v))
            h_tm = self.text_to_inter(h_t)
            s_m = self.inter_san[k](s_m + torch.lerp(h_tm, h_v.to(h_tm.dtype), g_m))
        return self.fuse(torch.cat([self.text_head(s_t), self.image_head(s_v), self.inter_head(s_m)], dim=-1))


@dataclass(frozen=True)
class IisanOptions:
    stride: int = 2  # use hidden states 0, stride, 2*stride, ..., L
    layers: tuple[int, ...] = ()  # explicit hidden-state indices for both backbones (overrides stride)
    bottleneck: int = 64

    def __post_init__(self) -> None:
        if self.bottleneck < 1:
            raise TpmeError(f"iisan bottleneck must be at least 1, got {self.bottleneck}")
        if self.stride < 1:
            raise TpmeError(f"iisan stride must be at least 1, got {self.stride}")
        if list(self.layers) != sorted(set(self.layers)):
            raise TpmeError(f"iisan layers {list(self.layers)} must be increasing and distinct")


def layer_schedule(text_layers: int, image_layers: int, o: IisanOptions) -> tuple[list[int], list[int]]:
    """Hidden-state indices (0 = embedding output) read from each backbone, one per step."""
    if o.layers:
        bad = [l for l in o.layers if not 0 <= l <= min(text_layers, image_layers)]
        if bad:
            raise TpmeError(f"iisan layers {bad} are outside 0..{min(text_layers, image_layers)}", "hidden state 0 is the embedding output, L the last layer")
        return list(o.layers), list(o.layers)
    deepest = max(text_layers, image_layers)
    ref = range(0, deepest + 1, o.stride)
    return [round(l * text_layers / deepest) for l in ref], [round(l * image_layers / deepest) for l in ref]


def cls_states(model: nn.Module, layers: list[int], **inputs: torch.Tensor) -> torch.Tensor:
    """[N, len(layers), d]: the [CLS] vector of the chosen hidden states, no autograd graph.

    Forward hooks copy out only the [CLS] rows as each layer finishes, so a layer's full
    output is freed as soon as the next layer has read it; asking the model for
    `output_hidden_states` would keep every layer's [N, tokens, d] alive until the end
    (about 1.4 GB for ViT-base on a 352-item batch in fp16). Index 0 is the embedding
    output and l the output of layer l, as in `hidden_states`.
    """
    blocks = [model.embeddings, *_layer_list(model)]
    captured: dict[int, torch.Tensor] = {}

    def keep_cls(index: int):
        def hook(_module: nn.Module, _args: object, output: torch.Tensor | tuple) -> None:
            hidden = output[0] if isinstance(output, tuple) else output
            captured[index] = hidden[:, 0].clone()

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
    """Frozen backbones (eval mode, no_grad) feeding the side networks every step."""

    needs = frozenset({TEXT, IMAGE})

    def __init__(self, backbones: Backbones, side: SideNetworks, text_layers: list[int], image_layers: list[int]):
        super().__init__()
        self.text = backbones.text.requires_grad_(False)
        self.image = backbones.image.requires_grad_(False)
        self.side = side
        self.text_layers, self.image_layers = text_layers, image_layers

    def train(self, mode: bool = True) -> "IisanTower":
        super().train(mode)
        self.text.eval()
        self.image.eval()
        return self

    def forward(self, items: ItemBatch) -> torch.Tensor:
        text = cls_states(self.text, self.text_layers, input_ids=items.input_ids, attention_mask=items.attention_mask)
        image = cls_states(self.image, self.image_layers, pixel_values=items.pixels)
        return self.side(text, image)


def build_side(backbones: Backbones, embed_dim: int, o: IisanOptions) -> tuple[SideNetworks, list[int], list[int]]:
    text_layers, image_layers = layer_schedule(backbones.text.config.num_hidden_layers, backbones.image.config.num_hidden_layers, o)
    side = SideNetworks(backbones.text_hidden, backbones.image_hidden, len(text_layers), o.bottleneck, embed_dim)
    return side, text_layers, image_layers


@register_method("iisan", "IISAN side networks (intra text, intra image, inter) on every 2nd [CLS] state; backbones frozen, run without autograd")
class Iisan(Method):
    Options = IisanOptions

    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        side, text_layers, image_layers = build_side(backbones, embed_dim, self.options)
        return IisanTower(backbones, side, text_layers, image_layers)
