"""The decoder a causal-LM run adapts: a named shape (random init) or a local path.

Named shapes restate the published `config.json` of each model (architecture fields only),
so that shapes, parameter counts and estimates need no download. A local path is either
a `config.json` (the shape alone, random init) or a model directory: its weights load when
it holds them (`*.safetensors` / `*.bin`), and its tokenizer is used when it has one.
Encoder-only and encoder-decoder configs are refused: the scenario trains next-token loss.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tpme.errors import TpmeError

_LLAMA3_ROPE = {"rope_type": "llama3", "factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0, "original_max_position_embeddings": 8192}

SHAPES: dict[str, dict[str, Any]] = {
    # seconds on a CPU: Llama's layout at toy width (the tests' and the ci preset's model)
    "tiny": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 1024, "tie_word_embeddings": True, "rms_norm_eps": 1e-5},
    "smollm2-135m": {"model_type": "llama", "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
                     "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192, "tie_word_embeddings": True,
                     "rope_theta": 100000.0, "rms_norm_eps": 1e-5},
    "qwen2.5-0.5b": {"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
                     "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768, "tie_word_embeddings": True,
                     "rope_theta": 1000000.0, "rms_norm_eps": 1e-6},
    "qwen2.5-1.5b": {"model_type": "qwen2", "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
                     "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768, "tie_word_embeddings": True,
                     "rope_theta": 1000000.0, "rms_norm_eps": 1e-6},
    "llama-3.2-1b": {"model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16, "num_attention_heads": 32,
                     "num_key_value_heads": 8, "head_dim": 64, "vocab_size": 128256, "max_position_embeddings": 131072, "tie_word_embeddings": True,
                     "rope_theta": 500000.0, "rope_scaling": _LLAMA3_ROPE, "rms_norm_eps": 1e-5},
    "llama-3.2-3b": {"model_type": "llama", "hidden_size": 3072, "intermediate_size": 8192, "num_hidden_layers": 28, "num_attention_heads": 24,
                     "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256, "max_position_embeddings": 131072, "tie_word_embeddings": True,
                     "rope_theta": 500000.0, "rope_scaling": _LLAMA3_ROPE, "rms_norm_eps": 1e-5},
    "llama-3.1-8b": {"model_type": "llama", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                     "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 128256, "max_position_embeddings": 131072, "tie_word_embeddings": False,
                     "rope_theta": 500000.0, "rope_scaling": {**_LLAMA3_ROPE, "factor": 8.0}, "rms_norm_eps": 1e-5},
    "mistral-7b": {"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32,
                   "num_key_value_heads": 8, "head_dim": 128, "vocab_size": 32768, "max_position_embeddings": 32768, "tie_word_embeddings": False,
                   "rope_theta": 1000000.0, "sliding_window": None, "rms_norm_eps": 1e-5},
}
WEIGHT_FILES = ("*.safetensors", "*.bin")


@dataclass(frozen=True)
class ModelSpec:
    """What `--model` names: a built-in shape, or a config file / model directory."""

    name: str  # the shape's name, or the path as given
    config_path: Path | None = None  # config.json of a local model
    weights_dir: Path | None = None  # the directory holding weights, when it does
    tokenizer_dir: Path | None = None  # a directory with a tokenizer, when there is one

    @classmethod
    def parse(cls, model: str) -> "ModelSpec":
        key = model.strip().lower()
        if key in SHAPES:
            return cls(key)
        path = Path(model).expanduser()
        if not path.exists():
            raise TpmeError(f"unknown model {model!r}: neither a built-in shape nor an existing path",
                            f"use one of {', '.join(SHAPES)}, a config.json, or a local model directory")
        config = path / "config.json" if path.is_dir() else path
        if not config.is_file():
            raise TpmeError(f"{path} holds no config.json", "give a model directory with a config.json, or the config file itself")
        folder = config.parent
        weights = folder if path.is_dir() and any(any(folder.glob(p)) for p in WEIGHT_FILES) else None
        tokenizer = folder if any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")) else None
        return cls(str(model), config, weights, tokenizer)


def _check_decoder(config: Any, where: str) -> None:
    """Refuse a config that is not a decoder with a causal-LM head."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES, MODEL_FOR_MASKED_LM_MAPPING_NAMES

    kind = getattr(config, "model_type", None)
    archs = list(getattr(config, "architectures", None) or [])
    names_causal = any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    encoder_only = kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not names_causal and not getattr(config, "is_decoder", False)
    if getattr(config, "is_encoder_decoder", False) or kind not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES or encoder_only:
        what = "an encoder-decoder" if getattr(config, "is_encoder_decoder", False) else "an encoder-only" if encoder_only or kind in MODEL_FOR_MASKED_LM_MAPPING_NAMES else "not a causal-LM"
        raise TpmeError(f"{where} describes {what} model (model_type {kind!r}); the causal-lm scenario trains a decoder on next-token loss",
                        "give a decoder's config (Llama, Qwen2, Mistral, GPT-2, ...) or use the recommendation scenario for encoders")


def model_config(spec: ModelSpec) -> Any:
    """The transformers config of a spec (checked to be a decoder)."""
    from transformers import AutoConfig, CONFIG_MAPPING

    if spec.config_path is None:
        raw = dict(SHAPES[spec.name])
        config = CONFIG_MAPPING[raw.pop("model_type")](**raw)
        where = f"shape {spec.name!r}"
    else:
        where = str(spec.config_path)
        try:
            raw = json.loads(spec.config_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise TpmeError(f"cannot read {where}: {e}", "give a valid config.json") from None
        if not isinstance(raw, dict) or "model_type" not in raw:
            raise TpmeError(f"{where} has no model_type", "give a transformers config.json")
        if raw["model_type"] not in CONFIG_MAPPING:
            raise TpmeError(f"{where}: transformers does not know model_type {raw['model_type']!r}", "upgrade transformers or use another model")
        config = AutoConfig.for_model(**raw)
    _check_decoder(config, where)
    config.use_cache = False  # training: no key/value cache
    return config


def build_model(spec: ModelSpec, dtype: torch.dtype, meta: bool = False) -> nn.Module:
    """The decoder with its LM head, in `dtype`: loaded weights when the spec has them, else random init;
    meta=True builds shapes only (no init compute, no weights read)."""
    from transformers import AutoModelForCausalLM

    config = model_config(spec)
    if meta:
        with torch.device("meta"):
            return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    if spec.weights_dir is not None:
        return AutoModelForCausalLM.from_pretrained(spec.weights_dir, config=config, dtype=dtype, attn_implementation="sdpa")
    return AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
