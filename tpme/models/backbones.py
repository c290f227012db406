"""Text (BERT) and image (ViT) backbones from named sizes or local Hugging Face directories.

Named sizes are random-init (no weights ship offline); a directory with weights loads
them, a directory with only a config.json builds a random-init model of that shape.
Backbones have no pooler: item towers read [CLS] hidden states.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn
from transformers import AutoConfig, AutoModel, BertConfig, BertModel, PretrainedConfig, ViTConfig, ViTModel

from tpme.errors import TpmeError


@dataclass(frozen=True)
class Shape:
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    image_size: int
    patch: int


NAMED_SIZES: dict[str, Shape] = {
    "tiny": Shape(hidden=64, layers=2, heads=2, intermediate=128, vocab=2048, image_size=32, patch=8),
    "small": Shape(hidden=256, layers=4, heads=4, intermediate=1024, vocab=8192, image_size=64, patch=16),
    "base": Shape(hidden=768, layers=12, heads=12, intermediate=3072, vocab=30522, image_size=224, patch=16),
}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")


@dataclass(frozen=True)
class BackboneSpec:
    """`tiny|small|base` for both towers, or `TEXT_DIR,IMAGE_DIR` (either part may be a size)."""

    text: str
    image: str

    @classmethod
    def parse(cls, value: str) -> "BackboneSpec":
        parts = [p.strip() for p in value.split(",")]
        if len(parts) == 1:
            parts = parts * 2
        if len(parts) != 2 or not all(parts):
            raise TpmeError(f"bad --backbone {value!r}", "use tiny|small|base or TEXT_DIR,IMAGE_DIR")
        for p in parts:
            if p not in NAMED_SIZES and not Path(p).is_dir():
                raise TpmeError(f"backbone {p!r} is neither a named size nor a directory", f"use {'|'.join(NAMED_SIZES)} or a local Hugging Face model directory")
        return cls(*parts)

    @property
    def tokenizer_dir(self) -> str | None:
        """The text directory when it holds a tokenizer; otherwise one is trained on the titles."""
        if self.text in NAMED_SIZES:
            return None
        d = Path(self.text)
        return str(d) if (d / "tokenizer.json").is_file() or (d / "vocab.txt").is_file() else None


def text_config(spec: BackboneSpec) -> PretrainedConfig:
    if spec.text in NAMED_SIZES:
        s = NAMED_SIZES[spec.text]
        return BertConfig(hidden_size=s.hidden, num_hidden_layers=s.layers, num_attention_heads=s.heads, intermediate_size=s.intermediate, vocab_size=s.vocab)
    return _dir_config(spec.text)


def image_config(spec: BackboneSpec) -> PretrainedConfig:
    if spec.image in NAMED_SIZES:
        s = NAMED_SIZES[spec.image]
        return ViTConfig(hidden_size=s.hidden, num_hidden_layers=s.layers, num_attention_heads=s.heads, intermediate_size=s.intermediate, image_size=s.image_size, patch_size=s.patch)
    return _dir_config(spec.image)


def _dir_config(directory: str) -> PretrainedConfig:
    if not (Path(directory) / "config.json").is_file():
        raise TpmeError(f"no config.json in {directory}", "a backbone directory must be a Hugging Face model directory")
    return AutoConfig.from_pretrained(directory)


def _build(config: PretrainedConfig, directory: str | None) -> nn.Module:
    config._attn_implementation = "sdpa"
    cls = {"bert": BertModel, "vit": ViTModel}.get(config.model_type, AutoModel)
    has_weights = directory is not None and any((Path(directory) / f).is_file() for f in WEIGHT_FILES)
    kwargs = {"add_pooling_layer": False} if cls is not AutoModel else {}
    if has_weights:
        return cls.from_pretrained(directory, config=config, **kwargs)
    return cls(config, **kwargs) if cls is not AutoModel else AutoModel.from_config(config)


def build_from_config(config: PretrainedConfig) -> nn.Module:
    """A random-init backbone of this shape; no weights are read (the estimator builds it on meta)."""
    return _build(config, None)


def build_text_backbone(spec: BackboneSpec) -> nn.Module:
    return _build(text_config(spec), None if spec.text in NAMED_SIZES else spec.text)


def build_image_backbone(spec: BackboneSpec) -> nn.Module:
    return _build(image_config(spec), None if spec.image in NAMED_SIZES else spec.image)


@dataclass
class Backbones:
    """The two pretrained encoders a method adapts."""

    text: nn.Module
    image: nn.Module

    @property
    def text_hidden(self) -> int:
        return self.text.config.hidden_size

    @property
    def image_hidden(self) -> int:
        return self.image.config.hidden_size

    @property
    def image_size(self) -> int:
        return self.image.config.image_size

    @classmethod
    def build(cls, spec: BackboneSpec) -> "Backbones":
        return cls(build_text_backbone(spec), build_image_backbone(spec))
