"""`peft:<type>`: any `peft` method, by its type name.

Options (`--method-opt key=value`) go to the peft config class, converted by the type of
the config field. Recommendation: `text_targets=` / `image_targets=` (a comma list of
module-name suffixes, or `re:PATTERN`) override the target modules chosen per backbone;
prompt-learning types prepend virtual tokens and need task-specific model heads and token
embeddings (ViT has none), so they are refused there with the reason. Causal-lm: the
whole decoder is adapted with task type CAUSAL_LM, target modules are peft's defaults for
the model type unless `targets=` is given, and prompt-learning types apply natively
(`num_virtual_tokens`, and adaption prompt's `adapter_len`, default to 8 when not given,
`adapter_layers` to every layer; peft has no defaults for them). Types that
inject into no module and prompt nothing (X-LoRA) are refused in both.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from torch import nn

from tpme.errors import TpmeError
from tpme.methods._peft import apply_peft
from tpme.methods._targets import Targets, either, targets_for
from tpme.methods.registry import Method, register_family
from tpme.models.backbones import Backbones
from tpme.models.item_tower import DualEncoderTower, ItemTower

TARGET_OPTIONS = ("text_targets", "image_targets", "targets")
DEFAULT_VIRTUAL_TOKENS = 8
PROMPT_LEARNING_REASON = ("a prompt-learning method: it prepends virtual tokens to a text model's input embeddings and needs a task-specific PeftModel; "
                          "the ViT image backbone has no token embeddings and the item tower reads [CLS] states")
# fields the family sets itself; a user value for them would be overwritten or meaningless
RESERVED = {"peft_type", "task_type", "target_modules", "feedforward_modules", "base_model_name_or_path", "revision", "inference_mode", "auto_mapping", "peft_version"}


def _config_class(peft_type: str) -> type:
    from peft import PeftType
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    known = {t.value.lower(): t for t in PeftType}
    key = peft_type.lower().replace("-", "_")
    if key not in known or known[key] not in PEFT_TYPE_TO_CONFIG_MAPPING:
        usable = ", ".join(sorted(k for k, t in known.items() if t in PEFT_TYPE_TO_CONFIG_MAPPING))
        raise TpmeError(f"peft has no method type {peft_type!r}", f"peft types: {usable}")
    return PEFT_TYPE_TO_CONFIG_MAPPING[known[key]]


def is_prompt_learning(cls: type) -> bool:
    from peft.config import PromptLearningConfig

    return issubclass(cls, PromptLearningConfig)


def _check_applicable(peft_type: str, cls: type) -> None:
    if is_prompt_learning(cls):
        return
    if "target_modules" not in {f.name for f in dataclasses.fields(cls)}:
        raise TpmeError(f"peft:{peft_type} does not inject into target modules of a base model, so it cannot adapt these backbones", "use a peft type that injects into layers (lora, loha, lokr, ia3, vera, ...)")


def _convert(value: str, hint: Any, key: str, label: str) -> Any:
    """A command-line string -> the config field's type (Optional, unions, lists, Literal, dict as JSON)."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if type(None) in args and value.lower() in ("none", "null"):
            return None
        ordered = sorted((a for a in args if a is not type(None)), key=lambda a: a is str)  # str last: it accepts anything
        for arg in ordered:
            try:
                return _convert(value, arg, key, label)
            except TpmeError:
                continue
        raise TpmeError(f"option {key}={value!r} of {label} fits none of {hint}")
    if origin is typing.Literal:
        allowed = typing.get_args(hint)
        for a in allowed:
            if str(a) == value:
                return a
        raise TpmeError(f"option {key}={value!r} of {label} is not one of {', '.join(map(str, allowed))}")
    try:
        if hint is bool:
            if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            return value.lower() in ("1", "true", "yes")
        if hint is int:
            return int(value)
        if hint is float:
            return float(value)
        if hint is str or hint is Any:
            return value
        if origin in (list, tuple) or hint in (list, tuple):
            inner = (typing.get_args(hint) or (str,))[0]
            items = [_convert(v.strip(), inner, key, label) for v in value.split(",") if v.strip()]
            return tuple(items) if origin is tuple else items
        if origin is dict or hint is dict:
            parsed = json.loads(value)
            if not isinstance(parsed, dict):
                raise ValueError(value)
            return parsed
        if isinstance(hint, type) and hasattr(hint, "__members__"):  # an Enum
            return hint(value)
    except (ValueError, json.JSONDecodeError):
        raise TpmeError(f"option {key}={value!r} of {label} is not a valid {getattr(hint, '__name__', hint)}") from None
    raise TpmeError(f"option {key} of {label} has a type ({hint}) that cannot be given on the command line")


def _default_targets(peft_type: str, t: Targets) -> dict[str, Any]:
    if peft_type == "ia3":  # (IA)^3 scales keys, values and the FFN's down projection input
        ffn = t.ffn_out
        return {"target_modules": either(t.key, t.value, ffn), "feedforward_modules": ffn}
    if peft_type == "ln_tuning":
        return {"target_modules": t.layernorm}
    return {"target_modules": either(t.query, t.value)}


def _targets_override(value: str) -> str | list[str]:
    """`re:PATTERN` is a full-match regex over module names; otherwise a comma list of name suffixes."""
    if value.startswith("re:"):
        return value[3:]
    return [v.strip() for v in value.split(",") if v.strip()]


def check_prompt_fits(config: Any, model: nn.Module, label: str) -> None:
    """A prompt-learning config's layer count and widths, where given, must be the model's (peft fills only missing ones)."""
    mc = getattr(model, "config", None)
    if mc is None or not is_prompt_learning(type(config)):
        return
    want = {"num_layers": mc.num_hidden_layers, "token_dim": mc.hidden_size, "num_attention_heads": mc.num_attention_heads}
    bad = {k: (getattr(config, k), v) for k, v in want.items() if getattr(config, k, None) not in (None, v)}
    if bad:
        got = ", ".join(f"{k}={a} (the model has {b})" for k, (a, b) in bad.items())
        raise TpmeError(f"{label}: the prompt-learning config does not fit the {mc.model_type} model: {got}", "drop those fields (peft fills them from the model) or use the model the config was written for")


def adapt_decoder(model: nn.Module, config: Any, label: str) -> nn.Module:
    """A peft config applied to a whole causal-LM decoder, prompt-learning configs checked first."""
    check_prompt_fits(config, model, label)
    return apply_peft(model, config, label)


class PeftMethod(Method):
    """One peft type applied to each backbone (targets chosen per backbone; + heads), or to a whole decoder."""

    scenarios = frozenset({"recommendation", "causal-lm"})

    def __init__(self, peft_type: str, options: dict[str, str]):
        self.peft_type = peft_type.lower().replace("-", "_")
        self.name = f"peft:{peft_type}"
        self.config_cls = _config_class(peft_type)
        _check_applicable(peft_type, self.config_cls)
        self.raw = dict(options)
        fields = {f.name: f for f in dataclasses.fields(self.config_cls)}
        hints = typing.get_type_hints(self.config_cls)
        settable = sorted(set(fields) - RESERVED)
        self.kwargs: dict[str, Any] = {}
        self.overrides = {k: _targets_override(v) for k, v in options.items() if k in TARGET_OPTIONS}
        for key, value in options.items():
            if key in TARGET_OPTIONS:
                continue
            if key not in fields or key in RESERVED:
                raise TpmeError(f"{self.name} has no option {key!r}", f"its options: {', '.join([*TARGET_OPTIONS, *settable])}")
            self.kwargs[key] = _convert(value, hints.get(key, str), key, self.name)
        super().__init__(self.raw)

    def options_dict(self) -> dict[str, Any]:
        return dict(self.raw)

    def unsupported_reason(self, scenario: str) -> str | None:
        if scenario == "recommendation" and is_prompt_learning(self.config_cls):
            return f"{self.name} is {PROMPT_LEARNING_REASON}"
        return super().unsupported_reason(scenario)

    def adapt(self, model: nn.Module) -> nn.Module:
        per_backbone = sorted(set(self.overrides) - {"targets"})
        if per_backbone:
            raise TpmeError(f"{self.name}: {', '.join(per_backbone)} name(s) a recommender backbone", "give targets= for the decoder's target modules")
        fields = {f.name for f in dataclasses.fields(self.config_cls)}
        extra: dict[str, Any] = {"task_type": "CAUSAL_LM"} if "task_type" in fields else {}
        if "targets" in self.overrides:
            extra["target_modules"] = self.overrides["targets"]
        if is_prompt_learning(self.config_cls) and "num_virtual_tokens" not in self.kwargs:
            extra["num_virtual_tokens"] = DEFAULT_VIRTUAL_TOKENS
        if self.peft_type == "adaption_prompt":  # peft leaves both unset: prompts of the default length in every layer
            extra.update({k: v for k, v in {"adapter_len": DEFAULT_VIRTUAL_TOKENS, "adapter_layers": model.config.num_hidden_layers}.items() if k not in self.kwargs})
        try:
            config = self.config_cls(**extra, **self.kwargs)
        except (TypeError, ValueError) as e:
            raise TpmeError(f"{self.name}: bad configuration: {e}") from e
        return adapt_decoder(model, config, self.name)

    def config_for(self, model: nn.Module, which: str) -> Any:
        targets = _default_targets(self.peft_type, targets_for(model))
        if f"{which}_targets" in self.overrides:
            targets = {"target_modules": self.overrides[f"{which}_targets"]}
        try:
            return self.config_cls(**targets, **self.kwargs)
        except (TypeError, ValueError) as e:
            raise TpmeError(f"{self.name}: bad configuration: {e}") from e

    def build_tower(self, backbones: Backbones, embed_dim: int) -> ItemTower:
        reason = self.unsupported_reason("recommendation")
        if reason is not None:
            raise TpmeError(reason, "use a peft type that injects into layers (lora, loha, lokr, ia3, vera, boft, oft, ...)")
        if "targets" in self.overrides:
            raise TpmeError(f"{self.name}: targets= is the decoder's option (causal-lm)", "give text_targets= and image_targets= for the two backbones")
        text = apply_peft(backbones.text, self.config_for(backbones.text, "text"), self.name)
        image = apply_peft(backbones.image, self.config_for(backbones.image, "image"), self.name)
        return DualEncoderTower(Backbones(text, image), embed_dim)


register_family("peft", "any peft method by type name (peft:ia3, peft:loha, peft:vera; prompt-learning types such as peft:prefix_tuning on causal-lm); options go to its config", PeftMethod)
