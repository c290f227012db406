"""The multimodal sequential recommender: a method's item tower + the shared SASRec user encoder,
and THE assembly of it (backbones -> the method's tower -> recommender), which training, the
GPU-free estimate, `tpme params` and `tpme cache` all call."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tpme.datasets.batching import TrainBatch
from tpme.methods.registry import Method
from tpme.models.backbones import Backbones, BackboneSpec, build_from_config, image_config, text_config
from tpme.models.item_tower import ItemTower
from tpme.models.user_encoder import UserEncoder
from tpme.scenarios.base import Assembly
from tpme.scenarios.recommendation import protocol
from tpme.scenarios.recommendation.config import RunConfig


class Recommender(nn.Module):
    def __init__(self, tower: ItemTower, embed_dim: int, max_seq_len: int):
        super().__init__()
        self.tower = tower
        self.user_encoder = UserEncoder(embed_dim, max_seq_len)

    def forward(self, batch: TrainBatch) -> torch.Tensor:
        """In-batch softmax cross-entropy with logQ correction and own-sequence masking.

        Free of host synchronisation (no boolean indexing, no `.item()`): the loss is a
        masked mean over valid positions, so the step can be captured as a CUDA graph and
        never stalls the launch queue. Candidates marked not `real` (static-shape padding)
        are masked out of every row.
        """
        emb = self.tower(batch.items)  # [C, e]
        inputs, targets = batch.seq_index[:, :-1], batch.seq_index[:, 1:]
        valid = inputs >= 0
        x = emb[inputs.clamp(min=0)] * valid[..., None].to(emb.dtype)
        users = self.user_encoder(x, valid)  # [B, L, e]
        logits = (users @ emb.T).float() - batch.log_pop[None, None, :]  # [B, L, C]
        target = targets.clamp(min=0)
        logits = self.mask_candidates(logits, batch, target)
        per_position = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
        weight = valid.flatten().to(per_position.dtype)
        return (per_position * weight).sum() / weight.sum()

    def mask_candidates(self, logits: torch.Tensor, batch: TrainBatch, target: torch.Tensor) -> torch.Tensor:
        """Candidates of the user's own sequence other than the position's target, and static-shape
        padding slots, are never offered: one vectorised mask built by the loader."""
        candidates = torch.arange(logits.shape[-1], device=logits.device)
        masked = batch.own[:, None, :] & (candidates[None, None, :] != target[..., None])
        if batch.real is not None:
            masked = masked | ~batch.real[None, None, :]
        return logits.masked_fill(masked, torch.finfo(logits.dtype).min)


class OfficialRecommender(Recommender):
    """The recommender with the official code's loss masking (`ModelMM.forward` of GAIR-Lab/IISAN):
    padding slots' columns set to -1e4 for every row by boolean indexing, then per user a Python
    loop on the device compares every slot's item id with the user's L+1 ids, unmasks each
    position's own target slot one by one and writes -1e4 by boolean indexing (a host
    synchronisation per user). It masks exactly what `Recommender.mask_candidates` masks; what
    differs is the work: per user per step some 20 small kernels at L = 10 (forward and backward)
    and one synchronisation.
    Needs the official layout (slot b*(L+1)+j holds user b's j-th item; `OfficialLoader`)."""

    MASKED = -1e4  # the official fill value

    def mask_candidates(self, logits: torch.Tensor, batch: TrainBatch, target: torch.Tensor) -> torch.Tensor:
        b, length, _ = logits.shape
        ids = batch.items.item_ids
        slots = ids.view(b, length + 1)
        if batch.real is not None:
            logits[:, :, ~batch.real] = self.MASKED
        for i in range(b):
            reject = slots[i]
            every = ids.repeat(length).expand(len(reject), -1)
            mask = (every == reject.expand(every.size(1), len(reject)).t()).any(dim=0).reshape(logits[i].shape)
            for j in range(length):
                mask[j][i * (length + 1) + j + 1] = False
            logits[i][mask] = self.MASKED
        return logits


def assemble(cfg: RunConfig, method: Method, n_items: int | None = None, meta: bool = False) -> Assembly:
    """Backbones, the method's item tower, the recommender; `extras`: backbones and image size.

    meta=True: shapes only, on the meta device with no weight init and no weights read, and
    the method shapes what its `prepare` would create for `n_items` items (a cache).
    Real: local weights load where the backbone directories hold them.
    Under the official protocol the backbones, the method's build and the initialisation
    are the official code's (protocol.py).
    """
    spec = BackboneSpec.parse(cfg.backbone)
    e = cfg.train.embed_dim
    official = protocol.is_official(cfg)
    builder = _official_method(method) if official else method
    if meta:
        with torch.device("meta"):
            backbones = Backbones(build_from_config(text_config(spec)), build_from_config(image_config(spec)))
            model, tower = _build(builder, backbones, e, cfg, official)
            method.estimate_prepare(tower, n_items or 0, cfg.train.precision)
    else:
        backbones = Backbones.build(spec)
        model, tower = _build(builder, backbones, e, cfg, official)
    return Assembly(model, tower, {"backbones": backbones, "image_size": backbones.image_size})


def _build(method: Method, backbones: Backbones, embed_dim: int, cfg: RunConfig, official: bool) -> tuple[Recommender, nn.Module]:
    if official:
        protocol.prepare_backbones(backbones)
    tower = method.build_tower(backbones, embed_dim)
    model = (OfficialRecommender if official else Recommender)(tower, embed_dim, cfg.data.max_seq_len)
    if official:
        protocol.freeze_pooler(backbones, method.name)
        protocol.initialise(model)
    return model, tower


def _official_method(method: Method) -> Method:
    """The same method with its `official` option on (a copy; the caller's method is untouched)."""
    options = protocol.official_options(method.options)
    if options is method.options:
        return method
    official = type(method)(options)
    official.name = method.name
    return official
