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

import math

import torch
import torch.nn.functional as F
from torch import nn

from tpme.methods.iisan.options import IisanOptions, layer_schedule
from tpme.models.backbones import Backbones

GATE_TEMPERATURE = 0.1


class StackedSAN(nn.Module):
    """`networks` parallel chains of `steps` SAN blocks of one width, stored stacked.

    A SAN block is x + Linear(b -> d)(ReLU(Linear(d -> b)(x))). Stacking the networks
    that share a width turns each step's three small matmul pairs into one batched pair,
    and the weights are cast to the autocast dtype once per forward, not once per block:
    the cached step is bound by kernel launches, so fewer, larger kernels are what count.
    Initialised as nn.Linear is (uniform in +-1/sqrt(fan_in)).
    """

    def __init__(self, networks: int, steps: int, dim: int, bottleneck: int):
        super().__init__()
        self.networks = networks
        self.down_weight = nn.Parameter(_linear_init((steps, networks, dim, bottleneck), dim))
        self.down_bias = nn.Parameter(_linear_init((steps, networks, 1, bottleneck), dim))
        self.up_weight = nn.Parameter(_linear_init((steps, networks, bottleneck, dim), bottleneck))
        self.up_bias = nn.Parameter(_linear_init((steps, networks, 1, dim), bottleneck))

    def official_init(self) -> None:
        """The official SAN blocks: weights normal(0, 0.01), biases zero (each starts near identity)."""
        with torch.no_grad():
            for w in (self.down_weight, self.up_weight):
                nn.init.normal_(w, std=0.01)
            for b in (self.down_bias, self.up_bias):
                nn.init.zeros_(b)

    def blocks(self, dtype: torch.dtype) -> list[tuple[torch.Tensor, ...]]:
        """Per step (down_w, down_b, up_w, up_b), each [networks, ...], in the compute dtype."""
        parts = [p.to(dtype).unbind(0) for p in (self.down_weight, self.down_bias, self.up_weight, self.up_bias)]
        return list(zip(*parts))

    @staticmethod
    def apply(block: tuple[torch.Tensor, ...], x: torch.Tensor) -> torch.Tensor:
        """x [networks, N, d] -> the SAN blocks' outputs, one per network."""
        down_w, down_b, up_w, up_b = block
        return x + torch.baddbmm(up_b, torch.relu(torch.baddbmm(down_b, x.to(down_w.dtype), down_w)), up_w)


class StackedHeads(nn.Module):
    """Per network Linear(d -> d) then Linear(d -> e), stacked like StackedSAN."""

    def __init__(self, networks: int, dim: int, embed_dim: int):
        super().__init__()
        self.hidden_weight = nn.Parameter(_linear_init((networks, dim, dim), dim))
        self.hidden_bias = nn.Parameter(_linear_init((networks, 1, dim), dim))
        self.out_weight = nn.Parameter(_linear_init((networks, dim, embed_dim), dim))
        self.out_bias = nn.Parameter(_linear_init((networks, 1, embed_dim), dim))

    def forward(self, states: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """states [networks, N, d] -> [networks, N, e]."""
        w1, b1, w2, b2 = (p.to(dtype) for p in (self.hidden_weight, self.hidden_bias, self.out_weight, self.out_bias))
        return torch.baddbmm(b2, torch.baddbmm(b1, states.to(dtype), w1), w2)


def _linear_init(shape: tuple[int, ...], fan_in: int) -> torch.Tensor:
    bound = 1.0 / math.sqrt(fan_in)
    return torch.empty(shape).uniform_(-bound, bound)


def compute_dtype(x: torch.Tensor, param_dtype: torch.dtype) -> torch.dtype:
    """What autocast would compute a matmul on x in, or the parameters' dtype without it."""
    device = x.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else param_dtype


class SideNetworks(nn.Module):
    """Text-intra, image-intra and inter networks over per-step [CLS] states, heads and fusion.

    Networks of one width share a stack: all three when the backbones' widths match
    (rows text, image, inter), else text alone and image + inter. Per step k, with
    gates g = sigmoid(theta / 0.1) and h the step's [CLS] states:
      text  s_t = SAN(lerp(s_t, h_t, g_t))          (= g·h_t + (1 - g)·s_t)
      image s_v = SAN(lerp(s_v, h_v, g_v))
      inter s_m = SAN(s_m + lerp(P(h_t), h_v, g_m))  (P maps text to the image width)
    """

    def __init__(self, text_dim: int, image_dim: int, steps: int, bottleneck: int, embed_dim: int, per_network: bool = False):
        super().__init__()
        self.steps = steps
        self.shared = text_dim == image_dim
        widths = [image_dim] if self.shared else [text_dim, image_dim]
        rows = [3] if self.shared else [1, 2]
        self.sans = nn.ModuleList(StackedSAN(n, steps, d, bottleneck) for n, d in zip(rows, widths))
        self.per_network = per_network
        if per_network:  # one head and one gate row per network, so each can train at its own rate
            self.heads = nn.ModuleList(StackedHeads(1, d, embed_dim) for d in (text_dim, image_dim, image_dim))
            self.gate_rows = nn.ParameterList(nn.Parameter(torch.zeros(1, steps)) for _ in range(3))
            for san in self.sans:
                san.official_init()
        else:
            self.heads = nn.ModuleList(StackedHeads(n, d, embed_dim) for n, d in zip(rows, widths))
            self.gate_theta = nn.Parameter(torch.zeros(3, steps))  # rows: text-intra, image-intra, inter
        self.text_to_inter = nn.Identity() if self.shared else nn.Linear(text_dim, image_dim)
        self.fuse = nn.Linear(3 * embed_dim, embed_dim)

    def forward(self, text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """text [N, steps, d_t], image [N, steps, d_v] -> item embeddings [N, e]."""
        dtype = compute_dtype(text, self.fuse.weight.dtype)
        state_dtype = torch.promote_types(text.dtype, image.dtype)
        h_t, h_v = text.transpose(0, 1).to(state_dtype), image.transpose(0, 1).to(state_dtype)  # [steps, N, d]
        h_m = self.text_to_inter(h_t).to(h_v.dtype)
        theta = torch.cat(list(self.gate_rows)) if self.per_network else self.gate_theta
        gates = torch.sigmoid(theta / GATE_TEMPERATURE).T[..., None, None].unbind(0)  # per step [3, 1, 1]
        # per group: the states lerp moves towards (targets) and the inter network's other end
        if self.shared:
            targets = [torch.stack([h_t, h_v, h_v], dim=1).unbind(0)]
        else:
            targets = [h_t[:, None].unbind(0), torch.stack([h_v, h_v], dim=1).unbind(0)]
        states = [h_v.new_zeros(san.networks, text.shape[0], san.down_weight.shape[2]) for san in self.sans]
        blocks = [san.blocks(dtype) for san in self.sans]
        for k in range(self.steps):
            g = gates[k]
            for i, san in enumerate(self.sans):
                s = states[i]
                inter = i == len(self.sans) - 1  # the inter network is the last row of the last group
                g_i = g if self.shared else (g[:1] if i == 0 else g[1:])
                start = torch.cat([s[:-1], h_m[k][None]]) if inter else s
                x = torch.lerp(start, targets[i][k], g_i)
                if inter:  # + s_m on the last row; padding instead of an in-place add keeps the backward copy-free
                    x = x + F.pad(s[-1:], (0, 0, 0, 0, len(s) - 1, 0))
                states[i] = san.apply(blocks[i][k], x)
        if self.per_network:
            rows = [row[None] for s in states for row in s]  # text, image, inter
            outs = torch.cat([head(row, dtype) for head, row in zip(self.heads, rows)])
        else:
            outs = torch.cat([head(s, dtype) for head, s in zip(self.heads, states)])  # [3, N, e]
        return self.fuse(outs.transpose(0, 1).reshape(text.shape[0], -1))


def build_side(backbones: Backbones, embed_dim: int, o: IisanOptions) -> tuple[SideNetworks, list[int], list[int]]:
    text_layers, image_layers = layer_schedule(backbones.text.config.num_hidden_layers, backbones.image.config.num_hidden_layers, o)
    side = SideNetworks(backbones.text_hidden, backbones.image_hidden, len(text_layers), o.bottleneck, embed_dim, per_network=o.official)
    return side, text_layers, image_layers
