"""Argument helpers shared by subcommands."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from tpme.errors import TpmeError
from tpme.methods.registry import parse_method_opts

__all__ = ["parse_method_opts", "print_json"]


def add_weights_arg(p: argparse.ArgumentParser) -> None:
    from tpme.metrics.tpme import WEIGHT_PRESETS

    p.add_argument("--weights", default="paper", metavar="A1,A2,A3[,A4]|PRESET", help=f"TPME weights for time, parameters, memory and optionally energy per epoch "
                   f"(non-negative, sum 1; a4 needs energy, measured on NVIDIA GPUs) or a preset: {', '.join(WEIGHT_PRESETS)} (default: paper = 0.45,0.1,0.45)")


def add_require_idle_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--require-idle", action="store_true", help="refuse to start (exit 2, nothing written) when the host is busy: other processes "
                   "using the CPU cores a cell needs, or another process on a GPU; without it such cells are measured, warned about and marked in their records")


def require_idle(device_types: set[str]) -> None:
    """Raise when the host is busy for cells on these device types (cpu, cuda), naming what is busy:
    CPU cells need their threads' cores free, GPU cells one core and no other process on a GPU."""
    import torch

    from tpme.bench.host import available_cores, idle_check

    cores = min(torch.get_num_threads(), available_cores()) if "cpu" in device_types else 1
    reasons = idle_check(cores, gpu="cuda" in device_types)
    if reasons:
        raise TpmeError("--require-idle: the host is busy: " + "; ".join(reasons),
                        "wait until those processes finish or stop them, or drop --require-idle to measure anyway (each record then says the host was busy)")


def print_json(obj: Any) -> None:
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


class _SkipKnown:
    """A parser view that skips options another scenario already defined (shared flags such as
    --dataset are defined once; each scenario reads them from the same dest)."""

    def __init__(self, parser: argparse.ArgumentParser):
        self._parser = parser

    def add_argument_group(self, *args: Any, **kwargs: Any) -> "_SkipKnown":
        return _SkipKnown(self._parser.add_argument_group(*args, **kwargs))

    def add_argument(self, *flags: str, **kwargs: Any) -> Any:
        known = getattr(self._parser, "_option_string_actions", {})
        if any(f in known for f in flags):
            return None
        return self._parser.add_argument(*flags, **kwargs)


def add_scenario_args(p: argparse.ArgumentParser, data: bool = True) -> None:
    """`--scenario` and every scenario's own options (each says which scenario it belongs to)."""
    from tpme.scenarios import available_scenarios, get_scenario

    names = available_scenarios()
    p.add_argument("--scenario", default=None, help=f"the task methods adapt: {', '.join(names)} (default: recommendation)")
    for name in names:
        get_scenario(name).add_arguments(_SkipKnown(p), data)  # type: ignore[arg-type]


def add_train_args(p: argparse.ArgumentParser) -> None:
    """The training settings every scenario shares (TrainConfig); None keeps the preset's."""
    p.add_argument("--batch-size", type=int, help="samples (users, sequences) per batch")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--steps", type=int, help="timed steps; epoch time extrapolated from their median")
    g.add_argument("--epochs", type=int, help="timed whole epochs; epoch time measured")
    p.add_argument("--lr", type=float, help="learning rate (default: the preset's)")
    p.add_argument("--early-stop", type=int, metavar="PATIENCE", help="with --epochs: stop after PATIENCE epochs without a better validation metric (implies --eval)")
    p.add_argument("--eval", action="store_true", default=None, help="evaluate quality on held-out data: after every epoch, or once after the timed steps")
    p.add_argument("--warmup-steps", type=int, help="untimed steps before timing")
    p.add_argument("--device", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--precision", choices=["fp32", "fp16", "bf16"], help="autocast precision (default: the preset's)")
    p.add_argument("--seed", type=int, help="seed of data and initialisation")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model (compiled during warm-up; give enough --warmup-steps)")
    p.add_argument("--cuda-graphs", choices=["auto", "on", "off"], help="capture the training step as CUDA graphs: auto (default) where the method allows it on a GPU "
                   "(iisan-cached), falling back to eager with the reason recorded; on: fail instead; off: never")


def train_overrides(args: argparse.Namespace) -> dict[str, Any]:
    names = ("batch_size", "steps", "epochs", "lr", "early_stop", "eval", "warmup_steps", "device", "precision", "seed", "compile", "cuda_graphs")
    return {n: getattr(args, n, None) for n in names}


def add_methods_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", help="comma-separated method names, or `all` (default: every method of the scenario; with --peft-config, only those files)")


def method_names(args: argparse.Namespace, scenario: Any) -> list[str]:
    """`--methods` resolved for the scenario, plus the methods its own options name (`--peft-config`)."""
    from tpme.methods.registry import resolve_method_names

    extra = scenario.extra_methods(args)
    if extra and args.methods is None:
        return extra
    return resolve_method_names(args.methods or "all", scenario.name) + extra


def scenario_config(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> tuple[Any, Any]:
    """(scenario, config): the preset of `--scenario` with every option given applied.

    An option of another scenario is refused (it would be silently ignored otherwise)."""
    from tpme.scenarios import available_scenarios, get_scenario

    scenario = get_scenario(getattr(args, "scenario", None))
    for name in available_scenarios():
        other = get_scenario(name)
        foreign = [d for d in other.cli_dests if d not in scenario.cli_dests and getattr(args, d, None) is not None]
        if other is not scenario and foreign:
            flags = ", ".join("--" + d.replace("_", "-") for d in foreign)
            raise TpmeError(f"{flags} belong(s) to the {other.name} scenario, and this run is {scenario.name}", f"drop {flags}, or add --scenario {other.name}")
    cfg = scenario.preset(getattr(args, "preset", None) or "default").override(**train_overrides(args), **scenario.overrides(args), **(extra or {}))
    return scenario, cfg
