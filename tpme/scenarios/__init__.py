"""Scenarios: the task a method adapts, one folder each (recommendation/, causal_lm/, ...).

Each subpackage registers a `Scenario` instance when imported; built-in subpackages are
discovered, and third-party packages can add one through the entry-point group
`tpme.scenarios`, so a new task touches its own folder and nothing else.
"""
from __future__ import annotations

import importlib
import pkgutil
from importlib.metadata import entry_points

from tpme.errors import TpmeError
from tpme.scenarios.base import Scenario

ENTRY_POINT_GROUP = "tpme.scenarios"
DEFAULT = "recommendation"
_SCENARIOS: dict[str, Scenario] = {}
_BROKEN: dict[str, str] = {}
_loaded = False


def register_scenario(scenario: Scenario) -> Scenario:
    if scenario.name in _SCENARIOS and type(_SCENARIOS[scenario.name]) is not type(scenario):
        raise TpmeError(f"scenario name {scenario.name!r} is registered twice", "pick another name")
    _SCENARIOS[scenario.name] = scenario
    return scenario


def _load() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    for mod in pkgutil.iter_modules(__path__):
        if mod.ispkg:
            try:
                importlib.import_module(f"{__name__}.{mod.name}")
            except ImportError as e:  # a scenario's missing package hides that scenario only
                _BROKEN[mod.name] = f"{type(e).__name__}: {e}"
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as e:
            raise TpmeError(f"entry point {ep.name!r} ({ep.value}) of group {ENTRY_POINT_GROUP} failed to load: {e}", "fix or uninstall that plugin") from e


def available_scenarios() -> dict[str, str]:
    _load()
    return {name: s.description for name, s in _SCENARIOS.items()}


def get_scenario(name: str | None = None) -> Scenario:
    """The scenario of that name (`causal_lm` and `causal-lm` alike); None: the default."""
    _load()
    key = (name or DEFAULT).strip().lower().replace("_", "-")
    if key not in _SCENARIOS:
        broken = "".join(f"; {m} failed to load ({why})" for m, why in _BROKEN.items())
        raise TpmeError(f"unknown scenario {name!r}", f"use one of {', '.join(_SCENARIOS)}{broken}")
    return _SCENARIOS[key]
