"""One experiment folder of peft's method_comparison suite, read as that suite reads it.

peft's MetaMathQA suite lays an experiment out as `<root>/experiments/<method>/<name>/` with an
optional `adapter_config.json` (none: full fine-tuning) and an optional `training_params.json`
whose keys replace those of `<root>/default_training_params.json`. The replacement is shallow,
as peft's `get_train_config` does it (`{**defaults, **overrides}`): an experiment that names
`optimizer_kwargs` replaces the whole dict, so `{"lr": 0.005}` drops the default weight decay.
"""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tpme.errors import TpmeError

ADAPTER_CONFIG = "adapter_config.json"
TRAINING_PARAMS = "training_params.json"
DEFAULT_TRAINING_PARAMS = "default_training_params.json"
# peft's suite builds these through peft.optimizers instead of torch.optim; they may change the trainable set
PEFT_OPTIMIZERS = ("lora+", "lora-fa", "riemannian")
WEIGHT_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
QUANTISED_DTYPES = ("int8", "int4")
# peft imports these lazily inside one method's config or initialisation; named here so the user gets the extra to install
METHOD_PACKAGES = {"ADAMSS": ("sklearn", "scikit-learn")}
INSTALL_HINT = "pip install 'tpme[causal-lm]'"


@dataclass(frozen=True)
class OptimizerSpec:
    """The optimizer an experiment names: a torch.optim class name or one of peft's (`lora-fa`, ...)."""

    name: str
    kwargs: dict[str, Any]

    @property
    def is_peft(self) -> bool:
        return self.name in PEFT_OPTIMIZERS

    @property
    def lr(self) -> float | None:
        return self.kwargs.get("lr")

    @property
    def weight_decay(self) -> float | None:
        """As written; None when the experiment leaves it to the optimizer's own default."""
        return self.kwargs.get("weight_decay")


@dataclass(frozen=True)
class PeftExperiment:
    """An experiment folder: its label, peft config (None: full fine-tuning) and merged training params."""

    label: str
    path: Path
    adapter_config: dict[str, Any] | None
    training: dict[str, Any]
    sources: tuple[Path, ...]  # the files `training` was merged from, defaults first

    @property
    def is_full_finetuning(self) -> bool:
        return self.adapter_config is None

    @property
    def peft_type(self) -> str | None:
        return None if self.adapter_config is None else str(self.adapter_config.get("peft_type"))

    @property
    def optimizer(self) -> OptimizerSpec:
        return OptimizerSpec(self._get("optimizer_type", str), dict(self._get("optimizer_kwargs", dict)))

    @property
    def batch_size(self) -> int:
        return self._positive_int("batch_size")

    @property
    def max_seq_length(self) -> int:
        return self._positive_int("max_seq_length")

    @property
    def max_steps(self) -> int:
        return self._positive_int("max_steps")

    @property
    def dtype(self) -> str:
        """The weights' dtype as the file names it: float32, float16, bfloat16, int8 or int4."""
        value = self._get("dtype", str)
        if value not in (*WEIGHT_DTYPES, *QUANTISED_DTYPES):
            raise self._bad("dtype", value, f"one of {', '.join((*WEIGHT_DTYPES, *QUANTISED_DTYPES))}")
        return value

    @property
    def torch_dtype(self) -> torch.dtype:
        """The weights' torch dtype; quantised (bitsandbytes) weights have none tpme can build."""
        value = self.dtype
        if value in QUANTISED_DTYPES:
            raise TpmeError(f"{self.label}: weights quantised to {value} (bitsandbytes) are not modelled by tpme", f"set \"dtype\" to one of {', '.join(WEIGHT_DTYPES)} in {self.path / TRAINING_PARAMS}")
        return WEIGHT_DTYPES[value]

    @property
    def grad_clip(self) -> float | None:
        """Gradient-norm clipping threshold; None where the files set 0 (peft's 'skip')."""
        value = self._get("grad_norm_clip", (int, float))
        if value < 0:
            raise self._bad("grad_norm_clip", value, "0 (no clipping) or a positive norm")
        return float(value) or None

    @property
    def gradient_checkpointing(self) -> bool:
        return self._get("use_gc", bool)

    @property
    def use_amp(self) -> bool:
        return self._get("use_amp", bool)

    @property
    def autocast_adapter_dtype(self) -> bool:
        return self._get("autocast_adapter_dtype", bool)

    @property
    def compile(self) -> bool:
        return self._get("compile", bool)

    @property
    def lr_scheduler(self) -> str | None:
        return self._get("lr_scheduler", (str, type(None)))

    @property
    def model_id(self) -> str:
        return self._get("model_id", str)

    def _get(self, key: str, kind: type | tuple[type, ...]) -> Any:
        if key not in self.training:
            raise TpmeError(f"{self.label}: no {key!r} in {' or '.join(map(str, self.sources))}", f"add \"{key}\" to {self.sources[0]}")
        value = self.training[key]
        if not isinstance(value, kind) or (isinstance(value, bool) and kind in (int, (int, float))):
            raise self._bad(key, value, f"a {kind.__name__ if isinstance(kind, type) else ' or '.join(k.__name__ for k in kind)}")
        return value

    def _positive_int(self, key: str) -> int:
        value = self._get(key, int)
        if value <= 0:
            raise self._bad(key, value, "a positive integer")
        return value

    def _bad(self, key: str, value: Any, wanted: str) -> TpmeError:
        where = next((p for p in reversed(self.sources) if key in _read_json(p)), self.sources[0])
        return TpmeError(f"{self.label}: {key}={value!r} in {where} is not {wanted}", f"fix \"{key}\" in {where}")


def require_method_packages(adapter_config: dict[str, Any]) -> None:
    """Refuse, naming the extra, a method whose peft config or initialisation imports a package that is absent."""
    peft_type = str(adapter_config.get("peft_type", "")).upper()
    needed = METHOD_PACKAGES.get(peft_type)
    if needed and importlib.util.find_spec(needed[0]) is None:
        raise TpmeError(f"peft's {peft_type} needs {needed[1]}, which is not installed", INSTALL_HINT)


def label_for_config(path: str | Path) -> str:
    """'<method>/<name>': the two folders enclosing an adapter_config.json, as peft's suite names experiments."""
    p = Path(path).resolve()
    folder = p.parent if p.is_file() or p.suffix == ".json" else p
    if folder.parent == folder or not folder.parent.name:
        raise TpmeError(f"cannot label {path}: it needs two enclosing folders (<method>/<name>)", "put it in a folder laid out as experiments/<method>/<name>/")
    return f"{folder.parent.name}/{folder.name}"


def load_experiment(directory: str | Path) -> PeftExperiment:
    """Read an experiment folder laid out as peft's suite lays it out (see the module docstring)."""
    folder = Path(directory).resolve()
    if not folder.is_dir():
        raise TpmeError(f"experiment folder {directory} does not exist", "pass a folder laid out as <root>/experiments/<method>/<name>/")
    label = label_for_config(folder)
    adapter_path, params_path = folder / ADAPTER_CONFIG, folder / TRAINING_PARAMS
    if not adapter_path.is_file() and not params_path.is_file():
        raise TpmeError(
            f"{folder} holds neither {ADAPTER_CONFIG} nor {TRAINING_PARAMS}, so it is no experiment folder",
            f"pass <root>/experiments/<method>/<name>/; for full fine-tuning with the defaults, put an empty {{}} {TRAINING_PARAMS} there",
        )
    defaults_path = folder.parents[2] / DEFAULT_TRAINING_PARAMS if len(folder.parents) > 2 else folder / DEFAULT_TRAINING_PARAMS
    if not defaults_path.is_file():
        raise TpmeError(
            f"no {DEFAULT_TRAINING_PARAMS} three levels above {folder} (looked for {defaults_path})",
            f"lay the suite out as peft does: <root>/{DEFAULT_TRAINING_PARAMS} beside <root>/experiments/<method>/<name>/",
        )
    defaults = _read_json(defaults_path)
    sources: tuple[Path, ...] = (defaults_path,)
    training = dict(defaults)
    if params_path.is_file():
        overrides = _read_json(params_path)
        unknown = sorted(set(overrides) - set(defaults))
        if unknown:
            raise TpmeError(f"{params_path} sets {', '.join(map(repr, unknown))}, which {defaults_path} does not know", f"use only these keys: {', '.join(sorted(defaults))}")
        training.update(overrides)  # shallow, as peft's get_train_config merges
        sources += (params_path,)
    adapter_config = None
    if adapter_path.is_file():
        adapter_config = _read_json(adapter_path)
        if "peft_type" not in adapter_config:
            raise TpmeError(f"{adapter_path} has no \"peft_type\"", "save the config with peft (PeftConfig.save_pretrained) or add \"peft_type\"")
    return PeftExperiment(label=label, path=folder, adapter_config=adapter_config, training=training, sources=sources)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as e:
        raise TpmeError(f"{path} does not exist", "check the path") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise TpmeError(f"{path} is not valid JSON: {e}", "fix the file (it must hold one JSON object)") from e
    if not isinstance(data, dict):
        raise TpmeError(f"{path} holds a JSON {type(data).__name__}, not an object", "it must hold one JSON object of settings")
    return data
