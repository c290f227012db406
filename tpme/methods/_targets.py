"""Where methods attach in each backbone architecture (the recommender's encoders, and
decoders of the Llama layout for the causal-lm scenario).

transformers 5 names ViT's projections q_proj/k_proj/v_proj/o_proj and mlp.fc1/fc2,
while BERT keeps query/key/value and attention.output.dense / output.dense, so every
method chooses its target modules per backbone through this table. Patterns are
full-match regular expressions over module names (peft accepts the same form).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn

from tpme.errors import TpmeError


@dataclass(frozen=True)
class Targets:
    query: str
    key: str
    value: str
    attn_out: str  # the attention output projection
    ffn_out: str  # the FFN output (down) projection
    layernorm: str

    def matching(self, model: nn.Module, pattern: str) -> list[str]:
        return [name for name, _ in model.named_modules() if re.fullmatch(pattern, name)]


_PREFIX = r"(?:.*\.)?"
TARGETS: dict[str, Targets] = {
    "bert": Targets(
        query=_PREFIX + r"encoder\.layer\.\d+\.attention\.self\.query",
        key=_PREFIX + r"encoder\.layer\.\d+\.attention\.self\.key",
        value=_PREFIX + r"encoder\.layer\.\d+\.attention\.self\.value",
        attn_out=_PREFIX + r"encoder\.layer\.\d+\.attention\.output\.dense",
        ffn_out=_PREFIX + r"encoder\.layer\.\d+\.output\.dense",
        layernorm=_PREFIX + r"(?:encoder\.layer\.\d+\.(?:attention\.)?output\.LayerNorm|embeddings\.LayerNorm)",
    ),
    "vit": Targets(
        query=_PREFIX + r"layers\.\d+\.attention\.q_proj",
        key=_PREFIX + r"layers\.\d+\.attention\.k_proj",
        value=_PREFIX + r"layers\.\d+\.attention\.v_proj",
        attn_out=_PREFIX + r"layers\.\d+\.attention\.o_proj",
        ffn_out=_PREFIX + r"layers\.\d+\.mlp\.fc2",
        layernorm=_PREFIX + r"(?:layers\.\d+\.layernorm_(?:before|after)|layernorm)",
    ),
}
_DECODER = Targets(  # the Llama layout, shared by Qwen2, Mistral and others
    query=_PREFIX + r"layers\.\d+\.self_attn\.q_proj",
    key=_PREFIX + r"layers\.\d+\.self_attn\.k_proj",
    value=_PREFIX + r"layers\.\d+\.self_attn\.v_proj",
    attn_out=_PREFIX + r"layers\.\d+\.self_attn\.o_proj",
    ffn_out=_PREFIX + r"layers\.\d+\.mlp\.down_proj",
    layernorm=_PREFIX + r"(?:layers\.\d+\.(?:input|post_attention)_layernorm|model\.norm)",
)
TARGETS.update({kind: _DECODER for kind in ("llama", "qwen2", "qwen3", "mistral")})


def targets_for(model: nn.Module) -> Targets:
    kind = getattr(getattr(model, "config", None), "model_type", None)
    if kind not in TARGETS:
        raise TpmeError(f"no target-module table for backbone type {kind!r}", f"supported backbone types: {', '.join(TARGETS)}")
    return TARGETS[kind]


def either(*patterns: str) -> str:
    return "|".join(f"(?:{p})" for p in patterns)
