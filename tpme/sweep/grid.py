"""The cells of a run or a sweep, each with a deterministic key.

A sweep's cells are the cartesian product of its axes; a method's option axes apply to that
method only, so `lora` x 3 ranks and `fft` give 3 + 1 cells per combination of the other
axes, not 3 x 2. A run's cells are its methods x repeats of one configuration.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from tpme.results.record import cell_key
from tpme.scenarios.base import Scenario

METHOD_AXIS = "method"


@dataclass(frozen=True)
class Cell:
    key: str  # results.record.cell_key of (method, options, config, repeat): the same in every process
    method: str
    options: dict[str, str]
    config: Any  # the scenario's config
    repeat: int
    axes: dict[str, Any]  # this cell's value on every axis, written into its record
    scenario: Scenario

    @property
    def data_key(self) -> str:
        """Cells with the same data config share one prepared data file."""
        return self.scenario.data_key(self.config)


def make_cell(scenario: Scenario, method: str, options: dict[str, str], config: Any, repeat: int, axes: dict[str, Any]) -> Cell:
    config = scenario.config_for_method(config, method)
    return Cell(cell_key(method, options, config.to_dict(), repeat), method, options, config, repeat, axes, scenario)


def run_cells(scenario: Scenario, config: Any, methods: list[tuple[str, dict[str, str]]], repeats: int) -> list[Cell]:
    """`tpme run`: every method (with its options) x repeats of one configuration."""
    out = []
    for method, options in methods:
        for repeat in range(repeats):
            axes = {METHOD_AXIS: method, **({"repeat": repeat} if repeats > 1 else {})}
            out.append(make_cell(scenario, method, options, config, repeat, axes))
    return out


def product(axes: dict[str, list[Any]]) -> list[dict[str, Any]]:
    return [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
