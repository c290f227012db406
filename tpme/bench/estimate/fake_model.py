"""A method's whole recommender with fake parameters, and a training batch of fake tensors.

Recipe (DESIGN section 7): build backbones, tower and recommender on the meta device
(no weight memory, no init compute), let the method shape any state its `prepare`
would create (`Method.estimate_prepare`), then swap every parameter and buffer for a
FakeTensor on the CPU. Fake tensors have shapes, dtypes and storages that trackers see,
but no data: nothing of model size is ever allocated.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode

from tpme.bench.estimate.shadow import KnownValues
from tpme.config import RunConfig
from tpme.datasets.batching import IMAGE, TEXT, ItemBatch, TrainBatch
from tpme.methods.registry import Method
from tpme.models.backbones import Backbones, BackboneSpec, build_from_config, image_config, text_config
from tpme.models.recommender import Recommender


@dataclass(frozen=True)
class DataShape:
    """What the estimate needs to know about the dataset."""

    n_users: int
    n_items: int


def build_meta_model(cfg: RunConfig, method: Method, data: DataShape) -> tuple[Recommender, int]:
    """The recommender a cell would train, on the meta device, and the image size it reads."""
    spec = BackboneSpec.parse(cfg.backbone)
    with torch.device("meta"):
        backbones = Backbones(build_from_config(text_config(spec)), build_from_config(image_config(spec)))
        tower = method.build_tower(backbones, cfg.train.embed_dim)
        method.estimate_prepare(tower, data.n_items, cfg.train.precision)
        model = Recommender(tower, cfg.train.embed_dim, cfg.data.max_seq_len)
    return model, backbones.image_size


def fakify(model: nn.Module, mode: FakeTensorMode) -> nn.Module:
    """Replace every parameter and buffer by a fake CPU tensor of its shape and dtype, in place.

    Tied tensors stay tied; `requires_grad` is kept. `Module.to()` cannot do this (it
    fails inside fake mode), so the module dicts are rewritten directly.
    """
    swapped: dict[int, torch.Tensor] = {}  # id of a meta tensor (kept alive by the model) -> its fake

    def fake(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in swapped:
            with mode:
                f = torch.empty(t.shape, dtype=t.dtype, device="cpu")
            swapped[id(t)] = nn.Parameter(f, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else f
        return swapped[id(t)]

    for module in model.modules():
        for registry in (module._parameters, module._buffers):
            for name, t in list(registry.items()):
                if t is not None:
                    registry[name] = fake(t)
    return model


def synthetic_batch(batch_size: int, max_seq_len: int, text_len: int, image_size: int, needs: frozenset[str]) -> TrainBatch:
    """The largest batch of a config: B full sequences of L+1 distinct items (C = B*(L+1)),
    titles of full length. Index tensors are real (small); pixels are built fake later."""
    seq = max_seq_len + 1
    c = batch_size * seq
    index = torch.arange(c).view(batch_size, seq)
    own = torch.zeros(batch_size, c, dtype=torch.bool)
    own[torch.arange(batch_size).repeat_interleave(seq), index.flatten()] = True
    items = ItemBatch(torch.arange(1, c + 1))
    if TEXT in needs:
        items.input_ids = torch.ones(c, text_len, dtype=torch.long)
        items.attention_mask = torch.ones(c, text_len, dtype=torch.long)
    if IMAGE in needs:
        items.pixels = torch.empty(c, 3, image_size, image_size, dtype=torch.uint8, device="meta")
    return TrainBatch(seq_index=index, own=own, log_pop=torch.full((c,), -float(c)), items=items)


def fake_batch(batch: TrainBatch, mode: FakeTensorMode, known: KnownValues) -> TrainBatch:
    """The same batch as fake tensors; small tensors keep their values in `known`."""

    def conv(t: torch.Tensor | None, keep_value: bool = True) -> torch.Tensor | None:
        if t is None:
            return None
        with mode:
            f = torch.empty(t.shape, dtype=t.dtype, device="cpu")
        return known.know(f, t) if keep_value and t.device.type != "meta" else f

    it = batch.items
    items = ItemBatch(conv(it.item_ids), conv(it.input_ids), conv(it.attention_mask), conv(it.pixels, keep_value=False))
    return TrainBatch(conv(batch.seq_index), conv(batch.own), conv(batch.log_pop), items, conv(batch.real))
