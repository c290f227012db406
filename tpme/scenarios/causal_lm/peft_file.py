"""`--peft-config FILE`: a peft `adapter_config.json` run as a method of the causal-lm scenario.

The method's name is `peft-config:<absolute path>`; records and tables label it by the
file's two enclosing folders, as peft's method-comparison suite names its experiments
(`experiments/lora/llama-3.2-3B-rank32/adapter_config.json` is `lora/llama-3.2-3B-rank32`).
Registered here, in the scenario, because only a whole decoder takes a file written for one.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

from torch import nn

from tpme.errors import TpmeError
from tpme.methods.peft_family import adapt_decoder
from tpme.methods.registry import Method, register_family
from tpme.scenarios.causal_lm.peft_experiment import (
    DEFAULT_TRAINING_PARAMS,
    TRAINING_PARAMS,
    load_experiment,
    require_method_packages,
)

PREFIX = "peft-config"


def experiment_label(path: Path) -> str:
    """The two folders enclosing a config file: `<method>/<experiment>`."""
    return f"{path.parent.parent.name}/{path.parent.name}"


def load_config(path: Path) -> Any:
    """The peft config object a file describes (fields a newer peft wrote are ignored with a warning)."""
    from peft.config import PeftConfigMixin

    try:
        raw = PeftConfigMixin.from_json_file(str(path))
    except (OSError, ValueError) as e:
        raise TpmeError(f"cannot read the peft config {path}: {e}", "give a peft adapter_config.json") from None
    if not isinstance(raw, dict) or "peft_type" not in raw:
        raise TpmeError(f"{path} has no peft_type", "give a peft adapter_config.json")
    require_method_packages(raw)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return PeftConfigMixin.from_peft_type(**raw)
    except (TypeError, ValueError, KeyError) as e:
        raise TpmeError(f"{path} is not a config this peft accepts: {e}", "check its peft_type and fields against the installed peft") from None


def raw_config(path: Path) -> dict[str, Any]:
    """The file's JSON object as written (load_config has already checked it is a peft config)."""
    return json.loads(path.read_text())


def training_params(path: Path) -> dict[str, Any] | None:
    """How peft's suite would train the experiment this file belongs to: its folder read as an
    experiment when the suite's defaults lie three levels up, else a training_params.json beside
    the file, else None (the suite's defaults apply)."""
    folder = path.resolve().parent
    if len(folder.parents) > 2 and (folder.parents[2] / DEFAULT_TRAINING_PARAMS).is_file():
        return load_experiment(folder).training
    beside = folder / TRAINING_PARAMS
    if beside.is_file():
        try:
            params = json.loads(beside.read_text())
        except ValueError as e:
            raise TpmeError(f"{beside} is not valid JSON: {e}", "fix or remove it") from None
        if not isinstance(params, dict):
            raise TpmeError(f"{beside} does not hold a JSON object", "write the training parameters as one JSON object")
        return params
    return None


class PeftFileMethod(Method):
    """The peft config of one file applied to the whole decoder."""

    scenarios = frozenset({"causal-lm"})

    def __init__(self, path: str, options: dict[str, str]):
        if options:
            raise TpmeError(f"a peft config file takes no --method-opt ({', '.join(options)})", "edit the file, or copy it and change the copy")
        self.path = Path(path)
        if not self.path.is_file():
            raise TpmeError(f"peft config file {self.path} does not exist", "give the path of a peft adapter_config.json")
        self.name = f"{PREFIX}:{self.path}"
        self.label = experiment_label(self.path)
        self.description = f"peft config {self.path}"
        self.config = load_config(self.path)
        super().__init__({})

    def options_dict(self) -> dict[str, Any]:
        return {}

    def adapt(self, model: nn.Module) -> nn.Module:
        return adapt_decoder(model, load_config(self.path), self.label)


register_family(PREFIX, "a peft adapter_config.json file (`--peft-config FILE` on causal-lm), labelled <method>/<experiment> by its folders", PeftFileMethod)
