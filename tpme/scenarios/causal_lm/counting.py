"""Exact (trainable, total) parameters of a decoder LLM under a peft config, as peft's suite counts them.

peft's method_comparison reports `PeftModel.get_nb_trainable_parameters()` after the optimizer is
built (its run script says so: an optimizer may change `requires_grad`), and `num_parameters()` for
full fine-tuning. This module builds the same objects without weights:

1. The base model and its adapters on the meta device: no memory, under a second for a 3B model.
2. Where an initialisation needs data (SHiRA's mask, AdaMSS's SVD and clustering, FRoD's and
   MiCA's SVD, BOFT's and UniLoRA's index draws on the meta device), peft raises. Then a probe of
   two decoder blocks on real, seeded random weights (embeddings stay on meta) is counted, and what
   its last block adds is added once per missing block. That is exact when every block is adapted
   alike (checked) and the count follows shapes, not values; AdaMSS's `use_dynamic_rank`, whose
   ranks follow the checkpoint's singular values, is refused rather than guessed.
3. The optimizer of `training` (peft's `lora-fa`, `lora+`, `riemannian`) is built as the suite
   builds it: LoRA-FA freezes every `lora_A`, so its trainable set is the optimizer's.
4. `_freeze_bookkeeping` restores the rule of the published runs for non-adapter state; see there.
"""
from __future__ import annotations

import contextlib
import copy
import sys
import warnings
from typing import Any

import torch
from torch import nn

from tpme.errors import TpmeError
from tpme.scenarios.causal_lm.peft_experiment import (
    INSTALL_HINT,
    PEFT_OPTIMIZERS,
    QUANTISED_DTYPES,
    WEIGHT_DTYPES,
    require_method_packages,
)

# settings whose count follows the checkpoint's values, which a count without it cannot know
_VALUE_DEPENDENT = {"ADAMSS": "use_dynamic_rank"}
# settings that can adapt one block differently from another (by layer index or a regex over full module names)
_PER_BLOCK_KEYS = ("layers_to_transform", "layers_pattern", "rank_pattern", "alpha_pattern")


def count(model_config, adapter_config: dict[str, Any] | None, training: dict[str, Any] | None = None) -> tuple[int, int]:
    """(trainable, total) of `model_config`'s causal LM with `adapter_config` (None: full fine-tuning).

    `training` is an experiment's merged training params (`PeftExperiment.training`); its `dtype`,
    `autocast_adapter_dtype`, `optimizer_type`/`optimizer_kwargs` and `seed` are used as peft's suite
    uses them. Without it: bf16 weights, fp32 adapters, AdamW.
    """
    training = training or {}
    dtype = _weight_dtype(training)
    if adapter_config is None:
        with torch.device("meta"):
            model = _base_model(model_config, dtype)
        n = model.num_parameters()  # what the suite reports for full fine-tuning: unique parameters
        return n, n
    _refuse_value_dependent(adapter_config)
    require_method_packages(adapter_config)
    try:
        with torch.device("meta"):
            model = _wrap(_base_model(model_config, dtype), adapter_config, training)
        return model.get_nb_trainable_parameters()
    except (NotImplementedError, RuntimeError) as e:
        if not _needs_data(e):
            raise _cannot_apply(adapter_config, e) from e
    return _count_from_probe(model_config, adapter_config, training, dtype)


def _wrap(base: nn.Module, adapter_config: dict[str, Any], training: dict[str, Any]) -> nn.Module:
    """Wrap `base` as peft's suite does and build its optimizer: the model whose flags peft counts."""
    from peft import get_peft_model

    config = _peft_config(adapter_config)
    with _quiet(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(training.get("seed", 0)))
        try:
            model = get_peft_model(base, config, autocast_adapter_dtype=bool(training.get("autocast_adapter_dtype", True)))
        except ImportError as e:
            raise TpmeError(f"{config.peft_type} needs a package that is not installed: {e}", INSTALL_HINT) from e
        except (ValueError, TypeError, KeyError, AttributeError) as e:
            raise _cannot_apply(adapter_config, e) from e
        _build_optimizer(model, training)
    _freeze_bookkeeping(model)
    return model


def _peft_config(adapter_config: dict[str, Any]):
    """A fresh PeftConfig (get_peft_model fills it in); keys this peft does not know are dropped, as peft drops them."""
    from peft import PeftConfig

    try:
        with _quiet():
            return PeftConfig.from_peft_type(**copy.deepcopy(adapter_config))
    except KeyError as e:
        raise TpmeError(f"unknown peft_type {adapter_config.get('peft_type')!r}", "use a peft_type of the installed peft (peft.PeftType)") from e
    except (TypeError, ValueError) as e:
        raise TpmeError(f"invalid {adapter_config.get('peft_type')} config: {e}", "fix the adapter_config.json") from e


def _count_from_probe(model_config, adapter_config: dict[str, Any], training: dict[str, Any], dtype: torch.dtype) -> tuple[int, int]:
    """Count a probe of two blocks on real weights and add what its last block adds once per missing block."""
    config = _peft_config(adapter_config)
    per_block = _per_block_settings(config)
    if per_block:
        raise TpmeError(
            f"counting {adapter_config.get('peft_type')} needs real weights, and tpme extrapolates from a probe of two blocks, "
            f"which is exact only when every block is adapted alike; this config sets {', '.join(per_block)}",
            "count a config that adapts every block alike (a list of target_modules, no per-layer settings)",
        )
    with torch.device("meta"):
        blocks_path, blocks = _decoder_blocks(_base_model(model_config, dtype))
    kept = min(blocks, 2)
    model = _wrap(_probe_model(model_config, kept, dtype, int(training.get("seed", 0))), adapter_config, training)
    # named_parameters visits a shared parameter once, under its first name: a tensor shared by all
    # blocks (UniLoRA's vector) falls in block 0, so the last block holds only what each block adds
    last = f".{blocks_path}.{kept - 1}."
    whole, added = [0, 0], [0, 0]
    for name, p in model.named_parameters():  # the loop of PeftModel.get_nb_trainable_parameters
        for part in (whole, added) if last in f".{name}" else (whole,):
            part[0] += p.numel() if p.requires_grad else 0
            part[1] += p.numel()
    return whole[0] + (blocks - kept) * added[0], whole[1] + (blocks - kept) * added[1]


def _decoder_blocks(model: nn.Module) -> tuple[str, int]:
    """The path of the ModuleList holding the decoder blocks (the one as long as num_hidden_layers), and its length."""
    blocks = _num_blocks(model.config)
    found = [name for name, m in model.named_modules() if isinstance(m, nn.ModuleList) and len(m) == blocks]
    if len(found) != 1:
        raise TpmeError(
            f"cannot tell the decoder blocks of {type(model).__name__} (module lists of {blocks} entries: {found or 'none'})",
            "count this method on a model whose blocks are one nn.ModuleList, as transformers' decoders have",
        )
    return found[0], blocks


def _probe_model(model_config, blocks: int, dtype: torch.dtype, seed: int) -> nn.Module:
    """The model cut to `blocks` decoder blocks on real weights, its embeddings left on meta.

    Every real weight is its own Parameter viewing the front of one seeded random buffer: what
    these initialisations need is a real tensor of the right shape, and one draw of the largest
    shape costs an eighth of drawing two blocks of a 3B model.
    """
    config = copy.deepcopy(model_config)
    config.num_hidden_layers = blocks
    if isinstance(getattr(config, "layer_types", None), list):
        config.layer_types = config.layer_types[:blocks]
    with torch.device("meta"):
        model = _base_model(config, dtype)
    keep_meta = {id(m) for m in (model.get_input_embeddings(), model.get_output_embeddings()) if m is not None}
    owned = [(module, name, p) for module in model.modules() if id(module) not in keep_meta for name, p in module.named_parameters(recurse=False) if p.is_meta]
    largest = max((p.numel() for _, _, p in owned), default=0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        pool = torch.empty(largest, dtype=dtype).normal_(0.0, float(getattr(config, "initializer_range", 0.02)))
    for module, name, p in owned:
        real = pool[: p.numel()].view(p.shape) if p.dim() > 1 else torch.ones(p.shape, dtype=p.dtype)
        module._parameters[name] = nn.Parameter(real, requires_grad=p.requires_grad)
    return model


def _build_optimizer(model: nn.Module, training: dict[str, Any]) -> None:
    """Build the suite's peft optimizer when `training` names one; torch optimizers leave requires_grad alone."""
    name = training.get("optimizer_type")
    if name not in PEFT_OPTIMIZERS:
        return
    from peft.optimizers import create_lorafa_optimizer, create_loraplus_optimizer, create_riemannian_optimizer

    kwargs = dict(training.get("optimizer_kwargs") or {})
    factories = {
        "lora-fa": lambda: create_lorafa_optimizer(model, **kwargs),
        "lora+": lambda: create_loraplus_optimizer(model, optimizer_cls=torch.optim.AdamW, **kwargs),
        "riemannian": lambda: create_riemannian_optimizer(model, optimizer_cls=torch.optim.AdamW, **kwargs),
    }
    try:
        factories[name]()
    except (TypeError, ValueError, KeyError) as e:
        raise TpmeError(f"peft's {name} optimizer rejects optimizer_kwargs {kwargs}: {e}", f"give optimizer_kwargs the arguments peft.optimizers' {name} factory takes") from e


def _freeze_bookkeeping(model: nn.Module) -> None:
    """Freeze the parameters a tuner layer lists in `other_param_names` (AdaLoRA's `ranknum`).

    The published runs (peft 0.19.2.dev0) chose the trainable set by name: a parameter trained only
    if its name held the method's prefix (`lora_`), and `...q_proj.ranknum.default` does not, so it
    stayed frozen. peft#3490 (in peft >= 0.20) chooses it structurally: everything on a tuner layer
    but the base layer keeps its flag. And AdaLoRA's `update_layer` moves `ranknum` to the base
    layer's dtype; a bf16 base turns the fp32 tensor into a new `nn.Parameter`, whose requires_grad
    is True. So current peft trains and counts one `ranknum` per adapted module: +56 for
    Llama-3.2-3B (q_proj and v_proj in 28 blocks). These are a rank's bookkeeping, not adapter
    weights, and no optimizer step changes what they mean; counting them frozen matches the runs.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            for name in module.other_param_names:
                holder = getattr(module, name, None)
                if isinstance(holder, nn.Module):
                    holder.requires_grad_(False)


def _base_model(model_config, dtype: torch.dtype) -> nn.Module:
    from transformers import AutoModelForCausalLM

    try:
        with _quiet():
            return AutoModelForCausalLM.from_config(model_config, dtype=dtype)
    except ValueError as e:
        raise TpmeError(f"{type(model_config).__name__} has no causal-LM model in transformers: {e}", "give the config of a decoder model (AutoModelForCausalLM)") from e


def _weight_dtype(training: dict[str, Any]) -> torch.dtype:
    name = training.get("dtype", "bfloat16")
    if name in QUANTISED_DTYPES:
        raise TpmeError(f"weights quantised to {name} (bitsandbytes) are not counted by tpme", f"set dtype to one of {', '.join(WEIGHT_DTYPES)}")
    if name not in WEIGHT_DTYPES:
        raise TpmeError(f"unknown weight dtype {name!r}", f"set dtype to one of {', '.join(WEIGHT_DTYPES)}")
    return WEIGHT_DTYPES[name]


def _refuse_value_dependent(adapter_config: dict[str, Any]) -> None:
    """A count without the checkpoint cannot follow settings that size the adapter from its weights (read
    from the file as written: each such setting defaults to off)."""
    setting = _VALUE_DEPENDENT.get(str(adapter_config.get("peft_type", "")).upper())
    if setting and adapter_config.get(setting):
        raise TpmeError(
            f"with {setting}, {adapter_config['peft_type']}'s parameter count follows the checkpoint's weights, which tpme does not load to count",
            f"count with {setting}=false, or measure the trainable parameters with `tpme run` on the real model",
        )


def _needs_data(error: BaseException) -> bool:
    """Did peft fail because a tensor it read was on the meta device (an init that needs data)?"""
    seen: BaseException | None = error
    while seen is not None:
        if "meta" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _per_block_settings(config) -> list[str]:
    """The settings of a PeftConfig that may adapt one block differently from another."""
    found = [k for k in _PER_BLOCK_KEYS if getattr(config, k, None)]
    found += [k for k in ("target_modules", "exclude_modules") if isinstance(getattr(config, k, None), str) and getattr(config, k) != "all-linear"]
    return found


def _num_blocks(model_config) -> int:
    blocks = getattr(model_config, "num_hidden_layers", None)
    if not isinstance(blocks, int) or blocks < 1:
        raise TpmeError(f"{type(model_config).__name__} names no num_hidden_layers", "give the config of a decoder model with its number of layers")
    return blocks


def _cannot_apply(adapter_config: dict[str, Any], error: BaseException) -> TpmeError:
    return TpmeError(f"{adapter_config.get('peft_type')} cannot be applied to this model: {error}", "check target_modules and the method's settings against the model")


@contextlib.contextmanager
def _quiet():
    """peft and transformers warn and sometimes print while building; keep stdout clean for --json."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(sys.stderr):
        warnings.simplefilter("ignore")
        yield
