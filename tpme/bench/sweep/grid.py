"""The cells of a sweep: the cartesian product of its axes, each cell with a deterministic key.

A method's option axes apply to that method only, so `lora` x 3 ranks and `fft` give
3 + 1 cells per combination of the other axes, not 3 x 2.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from tpme.bench.record import cell_key
from tpme.bench.sweep.spec import METHOD_AXIS, SweepSpec, option_text
from tpme.config import RunConfig


@dataclass(frozen=True)
class Cell:
    key: str  # record.cell_key of (method, options, config, repeat): the same in every process
    method: str
    options: dict[str, str]
    config: RunConfig
    repeat: int
    axes: dict[str, Any]  # this cell's value on every axis of the sweep, written into its record

    @property
    def data_key(self) -> str:
        """Cells with the same data config and tokenizer share one prepared data bundle."""
        blob = json.dumps({"backbone": self.config.backbone, "data": self.config.to_dict()["data"]}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _product(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]


def expand(spec: SweepSpec) -> list[Cell]:
    cells = []
    for method in spec.methods:
        fixed = spec.fixed_options.get(method, {})
        for config_values in _product(spec.config_axes):
            cfg = spec.base.replace(**config_values)
            config_dict = cfg.to_dict()
            for option_values in _product(spec.option_axes.get(method, {})):
                options = {k: option_text(v) for k, v in {**fixed, **option_values}.items()}
                for repeat in range(spec.repeats):
                    axes = {METHOD_AXIS: method, **config_values, **option_values}
                    if spec.repeats > 1:
                        axes["repeat"] = repeat
                    cells.append(Cell(cell_key(method, options, config_dict, repeat), method, options, cfg, repeat, axes))
    return cells
