"""The recommendation scenario's data: one prepared bundle per data config, its size for
estimates, and the popularity baseline every run is read against."""
from __future__ import annotations

import hashlib
import json

import torch

from tpme.datasets.batching import IMAGE, STATES, TEXT, ItemBatch, TrainBatch
from tpme.datasets.build import build_bundle
from tpme.datasets.bundle import DataBundle
from tpme.datasets.preprocess import preprocess
from tpme.datasets.synthetic import SyntheticCatalog, SyntheticSpec, generate_sequences
from tpme.models.backbones import BackboneSpec, text_config
from tpme.scenarios.base import DataShape
from tpme.scenarios.recommendation import protocol
from tpme.scenarios.recommendation.config import RunConfig


def data_key(cfg: RunConfig) -> str:
    """Cells with the same data config and tokenizer (the text backbone's) share one bundle."""
    blob = json.dumps({"backbone": cfg.backbone, "data": cfg.to_dict()["data"]}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def build(cfg: RunConfig) -> DataBundle:
    """Read or generate, preprocess and tokenise with the text backbone's tokenizer (or one trained offline)."""
    spec = BackboneSpec.parse(cfg.backbone)
    return build_bundle(cfg.data, spec.tokenizer_dir, text_config(spec).vocab_size)


def data_shape(cfg: RunConfig) -> DataShape:
    """Users and items after preprocessing: generated for synthetic data (no titles, images or
    tokeniser needed), read for a dataset directory."""
    kind, _, size = cfg.data.dataset.partition(":")
    if kind == "synthetic":
        spec = SyntheticSpec.named(size or "small", cfg.data.seed)
        pre = preprocess(generate_sequences(spec, SyntheticCatalog(spec)), cfg.data.max_seq_len)
        return DataShape(len(pre.sequences), {"items": len(pre.item_keys)})
    bundle = build(cfg)
    return DataShape(bundle.n_users, {"items": bundle.n_items})


def synthetic_batch(cfg: RunConfig, image_size: int, needs: frozenset[str], state_shapes: dict[str, tuple[int, int]] | None = None) -> TrainBatch:
    """The largest batch of a config: B full sequences of L+1 distinct items (C = B*(L+1)),
    titles of full length. Index tensors are real (small); pixels and precomputed states
    (fp32, `state_shapes` per item, for a tower that reads STATES) are on the meta device."""
    b, seq = cfg.train.batch_size, cfg.data.max_seq_len + 1
    c = b * seq
    index = torch.arange(c).view(b, seq)
    own = None  # official: the loss masks by item id on the device
    if not protocol.is_official(cfg):
        own = torch.zeros(b, c, dtype=torch.bool)
        own[torch.arange(b).repeat_interleave(seq), index.flatten()] = True
    items = synthetic_items(cfg, c, image_size, needs, state_shapes)
    return TrainBatch(seq_index=index, own=own, log_pop=torch.full((c,), -float(c)), items=items)


def synthetic_items(cfg: RunConfig, n: int, image_size: int, needs: frozenset[str], state_shapes: dict[str, tuple[int, int]] | None = None) -> ItemBatch:
    """The features of n items as a tower reads them: titles of full length (real, small),
    pixels and precomputed states on the meta device."""
    items = ItemBatch(torch.arange(1, n + 1))
    if TEXT in needs:
        items.input_ids = torch.ones(n, cfg.data.text_len, dtype=torch.long)
        items.attention_mask = torch.ones(n, cfg.data.text_len, dtype=torch.long)
    if IMAGE in needs:
        items.pixels = torch.empty(n, 3, image_size, image_size, dtype=torch.uint8, device="meta")
    if STATES in needs:
        shapes = state_shapes or {}
        items.text_states, items.image_states = (torch.empty(n, *shapes[m], dtype=torch.float32, device="meta") for m in (TEXT, IMAGE))
    return items
