"""The official IISAN code's protocol (GAIR-Lab/IISAN, `Code_Uncached`), beside tpme's.

tpme's protocol embeds each distinct real item of a batch once, trains everything at one
rate and masks a user's last L history items in evaluation. The paper's numbers were
produced by the official code, which differs in the work it does and in its settings; the
`official` protocol reproduces it so the two can be set side by side:

- workload: all B x (L+1) item slots of a batch go through the item tower, padding slots
  and repeated items included (`OfficialLoader`); padding slots are never candidates;
- loader: batches built by 4 worker processes (`loader_workers`), as the official
  DataLoader's `--num_workers 4`;
- batch: IISAN 64, the other methods 32 (`config_for_method`, from `iisan_batch_size`);
- Adam without weight decay at per-group rates (`param_groups`, the official run.py's
  grouping by parameter name);
- initialisation: user encoder Xavier-normal with zero biases and LayerNorm eps 1e-6, the
  image projection Xavier-normal (`initialise`); adapter and SAN blocks as the method's
  `official` option builds them;
- backbones: BERT keeps its pooler (frozen; BitFit trains its bias) and both backbones use
  eager attention, as transformers 4.20 did (`prepare_backbones`);
- DistributedDataParallel on one process (`distributed`), as the official launch script runs it;
- evaluation: a user's whole history is masked, the target too when bought before
  (evaluate.py, `OFFICIAL_MASKING`).
"""
from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import nn

from tpme.datasets.batching import ItemBatch, TrainBatch, TrainLoader
from tpme.datasets.workers import in_workers
from tpme.models.backbones import Backbones

OFFICIAL = "official"
TPME = "tpme"
PAD_PIXEL = 128  # uint8 grey: about 0 after the mean-0.5 / std-0.5 normalisation, as the official zero image

# learning rates of the official scripts (Code_Uncached/scripts/run_*.py)
RECSYS_LR = 2e-4  # user encoder, projections to e, fusion (PEFT scripts); FFT's script uses 1e-4
FFT_RECSYS_LR = 1e-4
TEXT_LR = 5e-5  # fine_tune_lr_text: trainable BERT weights, LoRA/BitFit text biases, IISAN's text 768x768 head
IMAGE_LR = 1e-4  # fine_tune_lr_image: trainable ViT weights, IISAN's image head and image gates
ADAPTER_LR = 4e-4  # adapter_cv_lr / adapter_bert_lr of the Adapter and LoRA scripts
SAN_LR = 1e-4  # the IISAN script's adapter_cv_lr / adapter_bert_lr
LOADER_WORKERS = 4  # the official parameters.py's --num_workers


def is_official(cfg: Any) -> bool:
    return getattr(cfg, "protocol", TPME) == OFFICIAL


def loader_workers(cfg: Any) -> int:
    """Processes that build training batches: the config's `loader_workers`, else the
    official code's 4 under the official protocol and none (one prefetch thread) under tpme's."""
    given = cfg.train.loader_workers
    if given is not None:
        return given
    return LOADER_WORKERS if is_official(cfg) else 0


def config_for_method(cfg: Any, method: str) -> Any:
    """The official scripts train IISAN at its own batch size (64), the others at the config's;
    no step is captured as a CUDA graph."""
    if not is_official(cfg):
        return cfg
    changes: dict[str, Any] = {"cuda_graphs": "off"}  # the official step is eager
    if method.startswith("iisan") and cfg.train.iisan_batch_size is not None:
        changes["batch_size"] = cfg.train.iisan_batch_size
    return cfg.replace(**changes)


def prepare_backbones(backbones: Backbones) -> None:
    """BERT with its pooler (run every step, as BertModel with a pooling layer does) and eager
    attention in both backbones (attention probabilities kept for backward)."""
    from transformers.models.bert.modeling_bert import BertPooler

    text = backbones.text
    if getattr(text.config, "model_type", None) == "bert" and getattr(text, "pooler", None) is None:
        text.pooler = BertPooler(text.config)
    for model in (backbones.text, backbones.image):
        model.config._attn_implementation = "eager"


def freeze_pooler(backbones: Backbones, method: str) -> None:
    """The official code freezes the pooler (`pooler_para`); BitFit marks its bias trainable again."""
    pooler = getattr(backbones.text, "pooler", None)
    if pooler is None:
        return
    pooler.dense.weight.requires_grad_(False)
    if method != "bitfit":
        pooler.dense.bias.requires_grad_(False)


def initialise(model: nn.Module) -> None:
    """The official user encoder (Xavier-normal Linear and Embedding weights, zero biases,
    LayerNorm eps 1e-6) and image projection (the ViT classifier: Xavier-normal, zero bias)."""
    for m in model.user_encoder.modules():
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.xavier_normal_(m.weight)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            m.eps = 1e-6
    heads = getattr(model.tower, "heads", None)
    image_proj = getattr(heads, "image_proj", None)
    if isinstance(image_proj, nn.Linear):
        nn.init.xavier_normal_(image_proj.weight)
        nn.init.zeros_(image_proj.bias)
    side = getattr(model.tower, "side", None)
    if side is not None and getattr(side, "per_network", False):  # IISAN's image head ends in the ViT classifier
        with torch.no_grad():
            nn.init.xavier_normal_(side.heads[1].out_weight[0])
            nn.init.zeros_(side.heads[1].out_bias)


def official_options(options: Any) -> Any:
    """A method's options with its `official` switch on, where it has one (adapter, iisan)."""
    if dataclasses.is_dataclass(options) and any(f.name == "official" for f in dataclasses.fields(options)):
        return dataclasses.replace(options, official=True)
    return options


def finds_unused_parameters(method: str) -> bool:
    """BitFit's pooler bias gets no gradient, so the official code's DDP must look for unused parameters."""
    return method == "bitfit"


def distributed(model: nn.Module, device: torch.device, method: str) -> nn.Module:
    """The model wrapped, as the official code wraps it even on one GPU, in DistributedDataParallel
    over a one-process group (gloo on CPU, nccl on CUDA): its gradient buckets hold a second copy
    of the trainable gradients. BitFit finds unused parameters (the pooler bias), as there."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=dist.HashStore(), rank=0, world_size=1)
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=finds_unused_parameters(method))


def _group(name: str, fft: bool) -> tuple[str, float]:
    """(group, rate) of one trainable parameter, by the official run.py's name rules."""
    if name.startswith("tower.side."):
        part = name.removeprefix("tower.side.")
        if part.startswith("sans."):
            return "san", SAN_LR
        if part.startswith("heads.0.hidden"):
            return "text", TEXT_LR
        if part.startswith("heads.1.hidden") or part.startswith("gate_rows.1"):
            return "image", IMAGE_LR
        return "recsys", RECSYS_LR
    for tower, rate in (("tower.text.", TEXT_LR), ("tower.image.", IMAGE_LR)):
        if name.startswith(tower):
            if "adapter" in name or "lora_" in name:
                return "adapter", ADAPTER_LR
            return tower.split(".")[1], rate
    return "recsys", FFT_RECSYS_LR if fft else RECSYS_LR


def param_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Adam parameter groups with the official rates, each named; FFT (a trainable backbone
    weight matrix) uses the FFT script's user-encoder rate."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    fft = any(n.startswith(("tower.text.", "tower.image.")) and n.endswith("weight") and p.dim() == 2 and "adapter" not in n and "lora_" not in n for n, p in named)
    groups: dict[str, dict[str, Any]] = {}
    for name, p in named:
        group, lr = _group(name, fft)
        groups.setdefault(group, {"name": group, "lr": lr, "params": []})["params"].append(p)
    return list(groups.values())


class OfficialLoader(TrainLoader):
    """Every one of the B x (L+1) item slots of a batch is embedded: padding slots (grey image,
    empty title) and items repeated within or across users, once per occurrence.

    A tower that reads precomputed states (official `iisan-cached`) gets them read per real
    slot, two files each (text and image), as the official loader's `torch.load`s per sample.

    Slot b*(L+1)+j holds user b's j-th item; padding slots are marked not `real`, so the loss
    never offers them. No own-sequence mask travels: the official loss builds it on the device
    from the slots' item ids (`OfficialRecommender`).

    `workers` > 0: `epoch` and `forever` build their batches in that many worker processes
    (tpme.datasets.workers), the same batches in the same order as with none.
    """

    def __init__(self, *args: Any, workers: int = 0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.workers = workers

    def epoch(self, epoch: int) -> Iterator[TrainBatch]:
        if not self.workers:
            return super().epoch(epoch)
        return in_workers(self, ((epoch, k) for k in range(len(self))), self.workers)

    def forever(self) -> Iterator[TrainBatch]:
        if not self.workers:
            return super().forever()
        return in_workers(self, ((epoch, k) for epoch in itertools.count() for k in range(len(self))), self.workers)

    def collate(self, seqs: np.ndarray) -> TrainBatch:
        b, length = seqs.shape
        ids = seqs.reshape(-1)
        real = ids > 0
        index = np.arange(ids.size, dtype=np.int64).reshape(b, length)
        index[seqs == 0] = -1
        log_pop = np.where(real, self.log_pop[ids], 0.0).astype(np.float32)
        return TrainBatch(
            seq_index=torch.from_numpy(index), own=None, log_pop=torch.from_numpy(log_pop),
            items=_all_slots(self.features.gather(ids[real]), torch.from_numpy(ids), torch.from_numpy(real)),
            real=torch.from_numpy(real),
        )


def _all_slots(gathered: ItemBatch, ids: torch.Tensor, real: torch.Tensor) -> ItemBatch:
    """The real items' features scattered into all slots; padding slots hold the padding item
    (and zero states, as the official loader's zero tensors)."""
    def spread(t: torch.Tensor | None, fill: int) -> torch.Tensor | None:
        if t is None:
            return None
        out = t.new_full((len(ids), *t.shape[1:]), fill)
        out[real] = t
        return out

    return ItemBatch(ids, spread(gathered.input_ids, 0), spread(gathered.attention_mask, 0), spread(gathered.pixels, PAD_PIXEL),
                     spread(gathered.text_states, 0), spread(gathered.image_states, 0))
